-- Argo CD health of a Kaizen ActionItem (kaizen.dev/v1alpha1): Degraded while overdue or stalled, so a
-- missed deadline shows in the application that owns the follow-up.
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
local overdue = condition(obj, "Overdue")
if overdue ~= nil and overdue.status == "True" then
  hs.status = "Degraded"
  hs.message = "Overdue: " .. (overdue.message or "")
  return hs
end
hs.status = "Healthy"
hs.message = "Phase " .. (obj.status.phase or "unknown")
if obj.status.dueAt ~= nil then
  hs.message = hs.message .. ", due " .. obj.status.dueAt
end
return hs
