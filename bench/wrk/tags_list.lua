-- wrk script: GET a repository's tags list.
wrk.method = "GET"
wrk.headers["Accept"] = "application/json"
