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

    /**
     * How long a command's response record is kept (which device a correlation id went to, and whether its response
     * was recorded): a response after this is dead-lettered as {@code response-device-mismatch}.
     */
    @WithDefault("1h")
    Duration responseClaimTtl();

    /**
     * Largest device response payload; a larger one is dead-lettered ({@code response-too-large}) and a call waiting
     * for it fails with RESOURCE_EXHAUSTED. Must stay below {@code gateway.mqtt.max-packet-size}.
     */
    @WithDefault("262144")
    int maxResponseBytes();

    /** Most commands queued for one offline device; beyond it SendEvent answers RESOURCE_EXHAUSTED. */
    @WithDefault("100")
    int maxQueuedPerDevice();

    /** Queued commands taken from Redis at a time when a device comes back (bounds memory and Redis work). */
    @WithDefault("25")
    int drainBatchSize();

    /**
     * A command requested through Kafka without {@code ttl_seconds} is stale (an EXPIRED result, never sent) once its
     * record is older than this; with a TTL, the TTL counts from the record's timestamp.
     */
    @WithDefault("30s")
    Duration kafkaMaxDelay();
}
