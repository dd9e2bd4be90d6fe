-- Argo CD health of a Kaizen Incident (kaizen.dev/v1alpha1). An open incident is not an unhealthy
-- resource (it is the record of one); only an Incident Kaizen cannot interpret is Degraded.
local function condition(obj, type)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == type then
        return c
      end
    end
  end
  return nil
end

local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil
    or (obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for Kaizen to observe the latest spec"
  return hs
end
local stalled = condition(obj, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
local overdue = condition(obj, "PostmortemOverdue")
hs.status = "Healthy"
hs.message = "Phase " .. (obj.status.phase or "unknown")
local items = obj.status.actionItems
if items ~= nil and items.total ~= nil and items.total > 0 then
  local finished = (items.done or 0) + (items.verified or 0) + (items.wontDo or 0)
  hs.message = hs.message .. ", follow-ups " .. finished .. "/" .. items.total .. " finished"
  if (items.overdue or 0) > 0 then
    hs.message = hs.message .. ", " .. items.overdue .. " overdue"
  end
end
if overdue ~= nil and overdue.status == "True" then
  hs.message = hs.message .. ", postmortem overdue"
end
return hs
