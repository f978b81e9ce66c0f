package io.devicegateway.command;

import java.time.Duration;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** Cloud-to-device commands ({@code gateway.commands.*}). */
@ConfigMapping(prefix = "gateway.commands")
public interface CommandConfig {

    /** Largest command payload; larger requests are INVALID_ARGUMENT. */
    @WithDefault("262144")
    int maxPayloadBytes();

    /** Response wait when a request asks to wait and sets no timeout. */
    @WithDefault("10s")
    Duration defaultResponseTimeout();

    /** Longest response wait a request may ask for. */
    @WithDefault("5m")
    Duration maxResponseTimeout();

    /** Longest time a command may wait for an offline device. */
    @WithDefault("7d")
    Duration maxTtl();

    /** Device responses; subscribed by every replica (not through the shared group) so the waiting one sees it. */
    @WithDefault("devices/+/responses/#")
    String responseFilter();

    /** How often expired queued commands are removed (and reported as expired). */
    @WithDefault("1s")
    Duration expirySweepInterval();

    /** How long the claim that records one response per correlation id is kept. */
    @WithDefault("1h")
    Duration responseClaimTtl();
}
