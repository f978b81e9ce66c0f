package io.devicegateway.dedup;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The Redis side of duplicate removal: one hash and one bitmap per device epoch, both tagged with the device id
 * (one Redis Cluster slot). Lua numbers are doubles, so a 64-bit sequence travels as its upper and lower 32 bits
 * ({@code hi}, {@code lo}) plus its decimal form (claim field names); {@code s - H} is computed as
 * {@code (hi - Hhi) * 2^32 + (lo - Hlo)}, exact while it is below 2^53 and of the right sign beyond, which is all the
 * window test needs. The window W is a power of two dividing 2^32, so a sequence's bit is {@code lo mod W}.
 *
 * <p>State of one epoch: {@code hh}/{@code hl} the highest sequence ever claimed (H), {@code w} the window it was
 * kept with, {@code p<seq>} a pending claim (owner token|claim ms|n, unique per message copy); the bitmap holds, for
 * every s in (H - W, H], whether s is committed (in Kafka). Bits of sequences leaving the window are cleared when H
 * advances (lazily, in ranges, so in-order traffic costs one range write per call).
 */
final class DedupScripts {

    private DedupScripts() {
    }

    /** Shared helpers: H, the lazy bit clearing. */
    private static final String COMMON = """
            local W = tonumber(ARGV[1])
            local st = redis.call('HMGET', KEYS[1], 'hh', 'hl', 'w')
            local hh, hl = tonumber(st[1]), tonumber(st[2])
            if hh and tonumber(st[3]) ~= W then
              redis.call('DEL', KEYS[2])
              redis.call('HSET', KEYS[1], 'w', W)
            end
            local cstart, ccount = 0, 0
            local function clearbits(a, b)
              while a <= b and a % 8 ~= 0 do redis.call('SETBIT', KEYS[2], a, 0); a = a + 1 end
              local bytes = math.floor((b - a + 1) / 8)
              if bytes > 0 then
                redis.call('SETRANGE', KEYS[2], a / 8, string.rep('\\0', bytes))
                a = a + bytes * 8
              end
              while a <= b do redis.call('SETBIT', KEYS[2], a, 0); a = a + 1 end
            end
            local function flushclear()
              if ccount == 0 then return end
              if ccount >= W then
                redis.call('DEL', KEYS[2])
              else
                local last = cstart + ccount - 1
                if last < W then clearbits(cstart, last) else clearbits(cstart, W - 1); clearbits(0, last - W) end
              end
              ccount = 0
            end
            local function diff(sh, sl) return (sh - hh) * 4294967296 + (sl - hl) end
            """;

    /**
     * Claims message copies of one device epoch, in order. KEYS: state hash, committed bitmap. ARGV: W, ttl ms, then
     * per copy: decimal, hi, lo, claim value. Returns per copy: {@code C} claimed (write it; also when this very
     * claim value already holds it: a retried call), {@code D} committed (a duplicate), {@code B} beyond the window
     * and unclaimed (cannot be checked), or the claim value of whoever holds it (busy).
     */
    static final String CLAIM = COMMON + """
            local out, claims, pend = {}, {}, {}
            if not hh then redis.call('DEL', KEYS[2]); redis.call('HSET', KEYS[1], 'w', W) end
            for i = 3, #ARGV, 4 do
              local dec, sh, sl, val = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3]
              local f = 'p' .. dec
              if not hh then
                hh, hl = sh, sl
                pend[f] = val; table.insert(claims, f); table.insert(claims, val); table.insert(out, 'C')
              else
                local d = diff(sh, sl)
                if d > 0 then
                  if ccount == 0 then cstart = (hl + 1) % W end
                  ccount = math.min(ccount + d, W)
                  hh, hl = sh, sl
                  pend[f] = val; table.insert(claims, f); table.insert(claims, val); table.insert(out, 'C')
                else
                  local cur = pend[f] or redis.call('HGET', KEYS[1], f)
                  if cur then
                    if cur == val then table.insert(out, 'C') else table.insert(out, cur) end
                  elseif d <= -W then
                    table.insert(out, 'B')
                  else
                    flushclear()
                    if redis.call('GETBIT', KEYS[2], sl % W) == 1 then
                      table.insert(out, 'D')
                    else
                      pend[f] = val; table.insert(claims, f); table.insert(claims, val); table.insert(out, 'C')
                    end
                  end
                end
              end
            end
            flushclear()
            redis.call('HSET', KEYS[1], 'hh', hh, 'hl', hl)
            if #claims > 0 then redis.call('HSET', KEYS[1], unpack(claims)) end
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            redis.call('PEXPIRE', KEYS[2], ARGV[2])
            return out
            """;

    /**
     * Marks copies committed (their record is in Kafka) and drops their claims. KEYS as CLAIM; ARGV: W, ttl ms, then
     * per copy: decimal, hi, lo.
     */
    static final String COMMIT = COMMON + """
            local fields = {}
            for i = 3, #ARGV, 3 do
              table.insert(fields, 'p' .. ARGV[i])
              if hh then
                local sl = tonumber(ARGV[i + 2])
                local d = diff(tonumber(ARGV[i + 1]), sl)
                if d <= 0 and d > -W then redis.call('SETBIT', KEYS[2], sl % W, 1) end
              end
            end
            redis.call('HDEL', KEYS[1], unpack(fields))
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            redis.call('PEXPIRE', KEYS[2], ARGV[2])
            return 1
            """;

    /**
     * Settles a dead owner's claim after the Kafka lookup, only if the claim is still the one looked up. KEYS as
     * CLAIM; ARGV: W, ttl ms, decimal, hi, lo, expected claim value, F (found: commit it) or T (take it over), the new
     * claim value. Returns D (found, committed: a duplicate), C (taken over: write it) or X (changed meanwhile).
     */
    static final String RESOLVE = COMMON + """
            local f = 'p' .. ARGV[3]
            if redis.call('HGET', KEYS[1], f) ~= ARGV[6] then return 'X' end
            if ARGV[7] == 'T' then
              redis.call('HSET', KEYS[1], f, ARGV[8])
              return 'C'
            end
            redis.call('HDEL', KEYS[1], f)
            if hh then
              local sl = tonumber(ARGV[5])
              local d = diff(tonumber(ARGV[4]), sl)
              if d <= 0 and d > -W then redis.call('SETBIT', KEYS[2], sl % W, 1) end
            end
            return 'D'
            """;

    static String sha1(String script) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-1")
                    .digest(script.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
