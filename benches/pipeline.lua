-- wrk script: send DEPTH requests (first argument after `--`, default 16) in each write.
local batch
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, nil) end
  batch = table.concat(r)
end
request = function() return batch end
