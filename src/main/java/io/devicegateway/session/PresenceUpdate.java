package io.devicegateway.session;

/**
 * A presence change to apply: online or offline at a version. A retained status only bootstraps a device the
 * store has never seen; it never overrides a recorded change.
 */
public record PresenceUpdate(String deviceId, boolean online, long version, long atMillis, String gateway,
        boolean retained) {

    /** Which of two pending updates for the same device survives coalescing. */
    PresenceUpdate newer(PresenceUpdate other) {
        if (other == null) {
            return this;
        }
        if (retained != other.retained) {
            return retained ? other : this; // a live event always beats a retained copy
        }
        return version >= other.version ? this : other;
    }
}
