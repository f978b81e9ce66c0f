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

    Writer writer();

    /** The gateway's ordered Kafka writers (ingest, presence, command results). */
    interface Writer {
        /**
         * Records a writer holds before its users stop handing in more (presence pauses MQTT reads, SendEvent
         * answers UNAVAILABLE); ingest has its own, lower bound ({@code gateway.ingest.max-in-flight}).
         */
        @WithDefault("10000")
        int maxPending();

        /** The same bound in key and value bytes. */
        @WithDefault("16777216")
        long maxPendingBytes();

        /**
         * While records keep coming, a writer collects them this long before handing them to its producer: one
         * wake-up and one Kafka request per window instead of per record at moderate rates. A record after a quiet
         * spell is not delayed. Zero hands every record over at once (then only the producer's linger.ms batches).
         */
        @WithDefault("8ms")
        java.time.Duration linger();

        /** Readiness turns DOWN when a writer holds records and has written none for this long. */
        @WithDefault("10s")
        java.time.Duration stallTimeout();
    }

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
