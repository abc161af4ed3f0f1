-- Bench: the closest Lua equivalent of dlp-redact with the default detectors
-- and action tag, for bench/configs/dlp-lua-*.yaml. The response body is
-- buffered whole (response_handle:body()) and redacted with string.gsub,
-- one pass per pattern. Lua patterns have no alternation and no bounded
-- repetition, so each format is its own pattern; %f frontiers on [%w_]
-- (B, E below) keep matches at word boundaries like the filter's \b. Cards must pass an issuer prefix
-- and Luhn check and SSNs the area/group/serial rules, as in the filter.
-- Kinds: card, us_ssn, email, phone, jwt, aws_access_key_id (the filter's
-- default set also has IBAN, more token kinds and PEM keys: it does more).

local function tag(kind)
  return "[REDACTED:" .. kind .. "]"
end

local function luhn_ok(d)
  local sum, double = 0, false
  for i = #d, 1, -1 do
    local n = string.byte(d, i) - 48
    if double then
      n = n * 2
      if n > 9 then n = n - 9 end
    end
    sum = sum + n
    double = not double
  end
  return sum % 10 == 0
end

local function issuer_ok(d)
  local n = #d
  local p2 = tonumber(string.sub(d, 1, 2))
  local p4 = tonumber(string.sub(d, 1, 4))
  if string.sub(d, 1, 1) == "4" then return n == 13 or n == 16 or n == 19 end
  if (p2 >= 51 and p2 <= 55) or (p4 >= 2221 and p4 <= 2720) then return n == 16 end
  if p2 == 34 or p2 == 37 then return n == 15 end
  if p4 == 6011 or p2 == 65 then return n == 16 or n == 19 end
  return false
end

local CARD_TAG = tag("card")
local function card(m)
  local d = string.gsub(m, "[ %-]", "")
  if issuer_ok(d) and luhn_ok(d) then return CARD_TAG end
  return nil -- not a card: keep the match
end

local SSN_TAG = tag("us_ssn")
local function ssn(m)
  local area, group, serial = string.sub(m, 1, 3), string.sub(m, 5, 6), string.sub(m, 8, 11)
  if area == "000" or area == "666" or string.sub(area, 1, 1) == "9"
      or group == "00" or serial == "0000" then
    return nil
  end
  return SSN_TAG
end

local D, G = "%d%d%d%d", "[ %-]?"
local B, E = "%f[%w_]", "%f[^%w_]" -- start and end of a word
local PASSES = {
  -- JWT: three base64url segments, header and payload JSON objects.
  { "eyJ[%w_%-]+%.eyJ[%w_%-]+%.[%w_%-]+", tag("jwt") },
  -- AWS access key id: AKIA/ASIA and 16 upper-case letters or digits.
  { B .. "A[KS]IA" .. string.rep("[%u%d]", 16) .. E, tag("aws_access_key_id") },
  { "%f[%w%._%+%-][%w%._%+%-]+@[%w%-]+%.[%w%.%-]*%w", tag("email") },
  -- Cards: 4-4-4-4 and Amex 4-6-5 with optional space/dash, plain 13-19 digits.
  { B .. D .. G .. D .. G .. D .. G .. D .. E, card },
  { B .. D .. G .. "%d%d" .. D .. G .. "%d" .. D .. E, card },
  { B .. D .. D .. D .. "%d%d?%d?%d?%d?%d?%d?" .. E, card },
  { B .. "%d%d%d%-%d%d%-%d%d%d%d" .. E, ssn },
  -- Phone: +1 numbers, (415) 555-0134, 415-555-0134, 415.555.0134.
  { "%+1[ %-%.]?%(?%d%d%d%)?[ %-%.]?%d%d%d[ %-%.]?%d%d%d%d" .. E, tag("phone") },
  { "%f[%w_(]%(?%d%d%d%)?[ %-%.]?%d%d%d[ %-%.]%d%d%d%d" .. E, tag("phone") },
}

local function redact(s)
  for _, p in ipairs(PASSES) do
    s = string.gsub(s, p[1], p[2])
  end
  return s
end

function envoy_on_response(response_handle)
  local body = response_handle:body()
  if body == nil then return end
  local text = body:getBytes(0, body:length())
  local redacted = redact(text)
  if redacted ~= text then
    body:setBytes(redacted)
  end
end
