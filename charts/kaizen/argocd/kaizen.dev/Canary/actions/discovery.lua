-- The Canary actions Argo CD offers, each enabled only when it can act.
local actions = {}
local phase = ""
if obj.status ~= nil and obj.status.phase ~= nil then
  phase = obj.status.phase
end
local rolling = phase == "Progressing" or phase == "Paused" or phase == "Promoting"
actions["promote"] = {["disabled"] = not rolling}
actions["abort"] = {["disabled"] = not rolling}
actions["resume"] = {["disabled"] = phase ~= "Paused"}
actions["retry"] = {["disabled"] = phase ~= "RolledBack"}
return actions
