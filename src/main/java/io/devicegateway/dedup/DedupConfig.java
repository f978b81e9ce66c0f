package io.devicegateway.dedup;

import java.time.Duration;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** Duplicate removal for devices that number their messages ({@code gateway.dedup.*}; README: Duplicate removal). */
@ConfigMapping(prefix = "gateway.dedup")
public interface DedupConfig {

    /** What to do with a numbered message while Redis (the dedup memory) is unreachable. */
    enum OnUnavailable {
        /** Not acknowledged and not written: held (bounded by the ingest in-flight bounds) and checked once Redis is back. */
        HOLD,
        /** Written at once without the check, with the header {@code dedup=unchecked}. */
        UNCHECKED
    }

    /** Off: numbered messages still carry their sequence and epoch, but are not checked. */
    @WithDefault("true")
    boolean enabled();

    /** MQTT 5 user property carrying the sequence number (unsigned 64-bit decimal). */
    @WithDefault("seq")
    String sequenceProperty();

    /** MQTT 5 user property carrying the sequence epoch (unsigned 64-bit decimal; absent = 0). */
    @WithDefault("seq-epoch")
    String epochProperty();

    /**
     * Sequences remembered per device epoch below the highest one seen: a late message within this window is still
     * accepted (once); one further behind is written with {@code dedup=beyond-window}. A power of two, 64 to 1048576.
     * Changing it resets what is remembered (each device epoch's memory starts again at its high-water mark).
     */
    @WithDefault("4096")
    int window();

    /**
     * How long a gateway process's claims stay protected after it last proved alive (renewed every fifth of this).
     * A claim of a process silent for longer is resolved by looking in Kafka. It stops writing its own claimed
     * messages when it could not renew for 60 % of this.
     */
    @WithDefault("10s")
    Duration ownerLease();

    @WithDefault("hold")
    OnUnavailable onUnavailable();

    /** A device epoch's memory expires after this long without a numbered message. */
    @WithDefault("7d")
    Duration stateTtl();

    /** A dead owner's claim is looked up in Kafka from the claim time minus this (clock steps, LogAppendTime skew). */
    @WithDefault("5s")
    Duration lookupMargin();

    /** Bound of one Kafka lookup; a lookup that does not finish is retried (the messages stay held). */
    @WithDefault("30s")
    Duration lookupTimeout();
}
