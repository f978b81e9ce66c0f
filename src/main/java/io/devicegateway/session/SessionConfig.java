package io.devicegateway.session;

import java.time.Duration;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** Device sessions in Redis ({@code gateway.sessions.*}). */
@ConfigMapping(prefix = "gateway.sessions")
public interface SessionConfig {

    /** Presence topic filter (subscribed through the shared group, QoS 1). */
    @WithDefault("devices/+/status")
    String statusFilter();

    /** How often pending last-seen updates (from telemetry) are written, in one pipelined batch. */
    @WithDefault("1s")
    Duration lastSeenFlushInterval();

    /**
     * A session that never saw presence (an id that only publishes, possibly made up by a device) is removed from
     * Redis after this long without traffic, so invented ids cannot grow Redis forever. Presence makes it permanent.
     */
    @WithDefault("7d")
    Duration unannouncedIdleExpiry();

    /** Prefix of every Redis key the gateway writes. */
    @WithDefault("dgw:")
    String keyPrefix();
}
