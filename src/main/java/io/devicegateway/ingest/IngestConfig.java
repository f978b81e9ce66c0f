package io.devicegateway.ingest;

import java.util.List;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** The MQTT-to-Kafka path ({@code gateway.ingest.*}). */
@ConfigMapping(prefix = "gateway.ingest")
public interface IngestConfig {

    /**
     * Filters ingest subscribes to (QoS 1). Topics must still follow the grammar or they are dead-lettered. The default
     * of the connector attribute {@code filters}.
     */
    @WithDefault("devices/+/telemetry/#,devices/+/events/#")
    List<String> filters();

    /** Payloads larger than this go to the dead-letter topic. Default 256 KiB. */
    @WithDefault("262144")
    int maxPayloadBytes();

    /**
     * Messages received but not yet acknowledged by Kafka. At the bound the gateway stops reading from the
     * broker socket until Kafka catches up, so memory stays bounded whatever Kafka does. The default of the
     * connector attribute {@code max-in-flight}.
     */
    @WithDefault("2000")
    int maxInFlight();

    /**
     * The same bound in payload bytes (2,000 messages of 256 KiB would be 0.5 GiB). Reading stops at whichever
     * bound is reached first and resumes once both are at half. Default 32 MiB; with the protobuf envelope and the
     * Kafka producer's copy, ingest holds at most about three times this on the heap. The default of
     * the connector attribute {@code max-in-flight-bytes}.
     */
    @WithDefault("33554432")
    long maxInFlightBytes();
}
