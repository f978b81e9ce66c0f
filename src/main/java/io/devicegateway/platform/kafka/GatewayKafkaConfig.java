package io.devicegateway.platform.kafka;

import java.util.Map;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/**
 * Kafka settings of the gateway ({@code gateway.kafka.*}). Connection and security come from the standard
 * Quarkus {@code kafka.*} keys (e.g. {@code kafka.bootstrap.servers}), shared by every client.
 */
@ConfigMapping(prefix = "gateway.kafka")
public interface GatewayKafkaConfig {

    Topics topics();

    /**
     * Producer overrides, any Kafka producer property, e.g. {@code gateway.kafka.producer."linger.ms"=10}. Applied
     * over the gateway's defaults (acks=all, idempotence on, unbounded delivery timeout).
     */
    Map<String, String> producer();

    interface Topics {
        @WithDefault("iot.telemetry")
        String telemetry();

        @WithDefault("iot.events")
        String events();

        @WithDefault("iot.dlq")
        String dlq();

        /** Compacted, key = device id. */
        @WithDefault("iot.presence")
        String presence();

        /** Commands requested through Kafka (value: SendEventRequest). */
        @WithDefault("iot.commands")
        String commands();

        @WithDefault("iot.command-results")
        String commandResults();
    }
}
