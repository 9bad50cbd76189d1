-- A tester in the original SureAliveD's API (the shape of its rtsp.lua): the daemon connects,
-- then calls process_event with what was written or read; the script answers with
-- "w" (write n bytes of data), "r" (read exactly n), "rav" (read what is available, up to n),
-- "eok" (up) or "efail" (down).
local url, state

function prepare(params, vname, vaddr, vport, vproto, vfwmark, rname, raddr, rport, rtestport)
  url = "rtsp://" .. raddr .. ":" .. rtestport .. (params ~= "" and params or "/")
  state = 0
end

function process_event(txt)
  if state == 0 then
    state = 1
    local req = "DESCRIBE " .. url .. " RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    return "w", string.len(req), req
  elseif state == 1 then
    state = 2
    return "rav", 256, ""
  elseif string.find(txt, "^RTSP/1.0 200 OK") then
    return "eok", 0, ""
  end
  return "efail", 0, ""
end
