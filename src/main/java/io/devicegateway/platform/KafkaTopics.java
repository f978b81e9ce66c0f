package io.devicegateway.platform;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** Kafka topic names the gateway writes to ({@code gateway.kafka.topics.*}). */
@ConfigMapping(prefix = "gateway.kafka.topics")
public interface KafkaTopics {

    @WithDefault("iot.telemetry")
    String telemetry();

    @WithDefault("iot.events")
    String events();

    @WithDefault("iot.dlq")
    String dlq();
}
