-- Argo CD health check for kumo's managed kinds: kumo.dev/Database and kumo.dev/Bucket.
--
-- One script serves both kinds; register it under resource.customizations.health.kumo.dev_Database
-- and resource.customizations.health.kumo.dev_Bucket (see docs/argocd.md). Argo CD runs it as a
-- chunk with the object in the global `obj` and reads the table it returns: hs.status (Healthy,
-- Progressing, Degraded, Suspended, Missing or Unknown) and hs.message.
--
-- Written for Argo CD's interpreter: Lua 5.1 (gopher-lua) with only the base, table and a safe
-- os library loaded, so it uses no string.* functions and no string methods.
--
-- Order of the checks, first match wins:
--   1. annotation kumo.dev/paused: "true"          -> Suspended
--   2. Synced=False for the current generation     -> Degraded (message: the cloud's error)
--   3. being deleted                               -> Progressing
--   4. no conditions yet                           -> Progressing
--   5. status.observedGeneration < generation      -> Progressing (spec edit not acted on yet)
--   6. no Ready condition yet                      -> Progressing
--      Ready=True                                  -> Healthy (the message mentions drift, if any)
--      Ready=False, reason Unavailable             -> Degraded
--      Ready=False, reason Creating (or another)   -> Progressing
--      Ready=Unknown                               -> Unknown

local function condition(conditions, type_)
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

-- Numbers arrive as numbers, or as strings when the JSON decoder kept them as json.Number.
local function number(value)
  if value == nil then
    return nil
  end
  return tonumber(value)
end

local function text(value)
  if value == nil or value == "" then
    return nil
  end
  return tostring(value)
end

-- A condition set for an older generation than the current one no longer describes the spec.
local function current(c, generation)
  local observed = number(c.observedGeneration)
  return observed == nil or generation == nil or observed >= generation
end

local function result(status, message)
  return {status = status, message = message}
end

local function assess(o)
  local meta = o.metadata or {}
  local annotations = meta.annotations or {}
  local status = o.status or {}
  local conditions = status.conditions or {}
  local generation = number(meta.generation)

  if annotations["kumo.dev/paused"] == "true" then
    return result("Suspended", "Paused by the annotation kumo.dev/paused=true")
  end

  local synced = condition(conditions, "Synced")
  if synced ~= nil and synced.status == "False" and current(synced, generation) then
    return result("Degraded", text(synced.message) or ("Synced=False (" .. tostring(synced.reason) .. ")"))
  end

  local ready = condition(conditions, "Ready")
  if ready ~= nil and ready.status == "False" and ready.reason == "Deleting" then
    return result("Progressing", "Deleting: " .. (text(ready.message) or "waiting for the cloud"))
  end
  if meta.deletionTimestamp ~= nil then
    return result("Progressing", "Deleting: waiting for the controller to release the object")
  end

  if #conditions == 0 then
    return result("Progressing", "Waiting for the kumo controller to report status")
  end

  local observed = number(status.observedGeneration)
  if observed ~= nil and generation ~= nil and observed < generation then
    return result(
      "Progressing",
      "Waiting for the controller to act on generation " .. tostring(generation) ..
        " (status reflects generation " .. tostring(observed) .. ")"
    )
  end

  if ready == nil then
    return result("Progressing", "Waiting for the Ready condition")
  end

  if ready.status == "True" then
    local name = text((status.atProvider or {}).externalName)
    local available = "Available"
    if name ~= nil then
      available = name .. " is available"
    end
    local inSync = condition(conditions, "InSync")
    if inSync ~= nil and inSync.status == "False" then
      -- Argo CD has no "warning" health: drift keeps the object Healthy and is told here.
      return result(
        "Healthy",
        available .. " but not in sync with the spec (InSync=False, " .. tostring(inSync.reason) .. "): " ..
          (text(inSync.message) or "see status.drift")
      )
    end
    return result("Healthy", available)
  end

  if ready.status == "False" then
    local message = text(ready.message)
    if ready.reason == "Unavailable" then
      return result("Degraded", "Unavailable: " .. (message or "the cloud resource cannot be used"))
    end
    if ready.reason == "Creating" then
      return result("Progressing", "Creating: " .. (message or "waiting for the cloud"))
    end
    if message ~= nil then
      return result("Progressing", "Not ready (" .. tostring(ready.reason) .. "): " .. message)
    end
    return result("Progressing", "Not ready (" .. tostring(ready.reason) .. ")")
  end

  return result("Unknown", "Ready=" .. tostring(ready.status) .. ": " .. (text(ready.message) or "no message"))
end

hs = assess(obj)
return hs
