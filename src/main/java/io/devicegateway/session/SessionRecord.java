package io.devicegateway.session;

import java.util.Map;

/** What Redis holds for one device. */
public record SessionRecord(String deviceId, boolean online, long connectedAtMs, long disconnectedAtMs,
        long lastSeenMs, long version, String gateway) {

    static SessionRecord of(String deviceId, Map<String, String> hash) {
        return new SessionRecord(deviceId, "1".equals(hash.get("online")), number(hash, "connected_at_ms"),
                number(hash, "disconnected_at_ms"), number(hash, "last_seen_ms"), number(hash, "version"),
                hash.getOrDefault("gateway", ""));
    }

    private static long number(Map<String, String> hash, String field) {
        String value = hash.get(field);
        return value == null ? 0 : Long.parseLong(value);
    }
}
