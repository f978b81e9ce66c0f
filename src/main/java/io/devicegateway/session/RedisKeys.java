package io.devicegateway.session;

import jakarta.inject.Singleton;

/** Every Redis key the gateway uses, in one place (documented in README: Redis keys). */
@Singleton
public class RedisKeys {

    private final String prefix;

    RedisKeys(SessionConfig config) {
        this.prefix = config.keyPrefix();
    }

    /** Hash: online, connected_at_ms, disconnected_at_ms, last_seen_ms, version, gateway, protocol. */
    public String session(String deviceId) {
        return prefix + "session:" + deviceId;
    }

    /** Set of online device ids. */
    public String online() {
        return prefix + "online";
    }

    /** List of queued commands for an offline device, oldest first; items are "expiresAtMs:QueuedCommand". */
    public String queue(String deviceId) {
        return prefix + "queue:" + deviceId;
    }

    /** Sorted set: device id scored by the earliest expiry in its queue. */
    public String queueDue() {
        return prefix + "queue-due";
    }

    /** Counter of queued commands across all devices. */
    public String queuedTotal() {
        return prefix + "queued-total";
    }

    /** Claim (SET NX, expiring) that one replica records a device's response to a correlation id. */
    public String responded(String correlationId) {
        return prefix + "responded:" + correlationId;
    }

    public String prefix() {
        return prefix;
    }
}
