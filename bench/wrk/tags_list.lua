-- wrk script: GET a repository's tags list.
wrk.method = "GET"
wrk.headers["Accept"] = "application/json"
-- A client holding a token sends it on every request (bench.py sets the variable).
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
