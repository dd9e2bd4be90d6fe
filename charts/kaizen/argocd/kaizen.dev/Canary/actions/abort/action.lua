-- Sets kaizen.dev/abort to a fresh timestamp: Kaizen acts once on each new value (status.handledAnnotations).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["kaizen.dev/abort"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
