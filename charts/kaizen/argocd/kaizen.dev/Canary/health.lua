-- Argo CD health of a Kaizen Canary (kaizen.dev/v1alpha1), from its kstatus conditions and phase.
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
local phase = obj.status.phase or ""
local weight = obj.status.canaryWeight or 0
if phase == "RolledBack" then
  local rb = condition(obj, "RolledBack")
  hs.status = "Degraded"
  hs.message = "Rolled back" .. ((rb ~= nil and rb.message ~= nil and (": " .. rb.message)) or "")
elseif obj.spec.paused == true and (phase == "Progressing" or phase == "Paused") then
  hs.status = "Suspended"
  hs.message = "Held at " .. weight .. "% by spec.paused"
elseif phase == "Paused" then
  -- A pause step without a duration waits for a human: kubectl kaizen resume.
  local step = nil
  if obj.spec.steps ~= nil and obj.status.currentStep ~= nil then
    step = obj.spec.steps[obj.status.currentStep + 1]
  end
  if step ~= nil and step.pause ~= nil and step.pause.duration == nil then
    hs.status = "Suspended"
    hs.message = "Paused at " .. weight .. "% until resumed (kubectl kaizen resume)"
  else
    hs.status = "Progressing"
    hs.message = "Pausing at " .. weight .. "%"
  end
elseif phase == "Progressing" or phase == "Promoting" or phase == "Initializing" then
  hs.status = "Progressing"
  hs.message = phase .. " at " .. weight .. "%"
elseif phase == "Succeeded" or phase == "Idle" then
  hs.status = "Healthy"
  hs.message = phase
else
  hs.status = "Progressing"
  hs.message = "Phase " .. phase
end
return hs
