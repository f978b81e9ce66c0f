package io.devicegateway.session;

import jakarta.inject.Singleton;

/**
 * Every Redis key the gateway uses, in one place (documented in README: Redis keys). Per-device keys carry the
 * device id as hash tag ({@code dgw:{truck-1}:session}), so a script touching a device's session and queue runs on
 * one Redis Cluster slot; global keys share their own tags and are never touched by the same script as a device key.
 * Device ids cannot contain braces, so an id is always exactly the tag.
 */
@Singleton
public class RedisKeys {

    private final String prefix;

    RedisKeys(SessionConfig config) {
        this.prefix = config.keyPrefix();
    }

    /** Hash: online, connected_at_ms, disconnected_at_ms, last_seen_ms, version, gateway, protocol. */
    public String session(String deviceId) {
        return prefix + "{" + deviceId + "}:session";
    }

    /** List of queued commands for an offline device, oldest first; items are "expiresAtMs:QueuedCommand". */
    public String queue(String deviceId) {
        return prefix + "{" + deviceId + "}:queue";
    }

    /** Sorted set: online device ids scored by the presence version that put them there. */
    public String online() {
        return prefix + "{presence}:online";
    }

    /** Sorted set: recently offline device ids by version, so a late online index write cannot undo an offline. */
    public String offline() {
        return prefix + "{presence}:offline";
    }

    /** Sorted set: device id scored by (at most) the earliest expiry in its queue, for the expiry sweeper. */
    public String queueDue() {
        return prefix + "{queues}:due";
    }

    /** Counter of queued commands across all devices (a gauge; see README: what is not atomic). */
    public String queuedTotal() {
        return prefix + "{queues}:total";
    }

    /**
     * A command sent to a device under a correlation id, and who recorded its response (command/ResponseWaiters).
     * In the device's slot like its session and queue; correlation ids are only unique per device.
     */
    public String responded(String deviceId, String correlationId) {
        return prefix + "{" + deviceId + "}:responded:" + correlationId;
    }

    /**
     * Duplicate removal (dedup/): hash of one device epoch's high-water mark ({@code hh}, {@code hl}: its upper and
     * lower 32 bits), window ({@code w}) and pending claims ({@code p<seq>} = owner|claim ms|n). In the device's slot.
     */
    public String dedup(String deviceId, long epoch) {
        return prefix + "{" + deviceId + "}:dedup:" + Long.toUnsignedString(epoch);
    }

    /** Bitmap of the sequences of that epoch committed to Kafka within the window, bit = sequence mod window. */
    public String dedupCommitted(String deviceId, long epoch) {
        return dedup(deviceId, epoch) + ":committed";
    }

    /** String with a TTL: this gateway process (owner token) is alive; its dedup claims are protected while it is. */
    public String dedupOwner(String token) {
        return prefix + "{dedup-owners}:" + token;
    }

    /** Registry: hash of a registered device (labels, enabled, times, revision, password hash, pending secret). */
    public String device(String deviceId) {
        return prefix + "{" + deviceId + "}:device";
    }

    /** Registry: sorted set of every registered device id, all scored 0, listed by lexicographic range. */
    public String deviceIndex() {
        return prefix + "{registry}:devices";
    }

    /** Registry: which instance runs the broker reconciliation (string with a TTL). */
    public String registryReconcileLock() {
        return prefix + "{registry}:reconcile-lock";
    }

    public String prefix() {
        return prefix;
    }

}
