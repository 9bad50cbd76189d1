-- ngx.re.find on input that makes a backtracking engine take exponential time, timed in the
-- check (os.clock: this process's CPU): what bench_lua_modules.py runs with params
-- "n=SIZE reps=N kind=subject|both".
--   subject: "(x+x+)+y" on n x's (no y: a backtracking engine tries every split)
--   both:    ("x?" n times)("x" n times) on n x's (the pattern grows with the subject)
function check(t)
  local n, reps = tonumber(t.args.n), tonumber(t.args.reps)
  local subject = string.rep("x", n)
  local pattern = "(x+x+)+y"
  if t.args.kind == "both" then pattern = string.rep("x?", n) .. string.rep("x", n) end
  local t0 = os.clock()
  for _ = 1, reps do
    local from, to, err = ngx.re.find(subject, pattern, "jo")
    if err then return false, err end
  end
  return true, string.format("%.3f", (os.clock() - t0) / reps * 1e6)
end
