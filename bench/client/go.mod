module hamn.local/bench/client

go 1.22
