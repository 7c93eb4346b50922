-- wrk script for bench_serve.py: GET /recommendations/<user>?k=10 over BENCH_USERS users from BENCH_FIRST_USER,
-- each connection waiting BENCH_DELAY_MS between requests (wrk has no fixed-rate mode: this caps the rate at
-- connections * 1000 / (delay + latency) per second); prints one BENCH line with the figures.
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local first = tonumber(os.getenv("BENCH_FIRST_USER") or "1")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = (tid or 0) * 7919
end

function request()
  counter = counter + 1
  return wrk.format("GET", "/recommendations/" .. (first + counter % users) .. "?k=10")
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f requests=%d duration_s=%.1f rps=%.1f " ..
    "non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, seconds, summary.requests / seconds, summary.errors.status,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
