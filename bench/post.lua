-- wrk: POST /api/tasks/add with a JSON body (bench/bench.py, benchmark 3)
wrk.method = "POST"
wrk.body = '{"args": [2, 3]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_TOKEN")
