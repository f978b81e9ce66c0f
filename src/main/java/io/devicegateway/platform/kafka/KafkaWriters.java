package io.devicegateway.platform.kafka;

import java.util.HashMap;
import java.util.Map;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;

import org.apache.kafka.clients.producer.ProducerConfig;

import io.smallrye.common.annotation.Identifier;

/** Creates {@link OrderedKafkaWriter}s from the shared {@code kafka.*} settings plus the gateway's producer defaults. */
@ApplicationScoped
public class KafkaWriters {

    @Inject
    @Identifier("default-kafka-broker")
    Map<String, Object> kafkaConfig;
    @Inject
    GatewayKafkaConfig config;

    /** No record is ever given up by the producer, and none is duplicated by its retries. */
    static Map<String, Object> defaults() {
        Map<String, Object> defaults = new HashMap<>();
        defaults.put(ProducerConfig.ACKS_CONFIG, "all");
        defaults.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        defaults.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        defaults.put(ProducerConfig.LINGER_MS_CONFIG, "2");
        defaults.put(ProducerConfig.BATCH_SIZE_CONFIG, "131072");
        defaults.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Integer.toString(Integer.MAX_VALUE));
        defaults.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "5000");
        return defaults;
    }

    public OrderedKafkaWriter create(String name, Runnable onRetry) {
        Map<String, Object> producer = defaults();
        kafkaConfig.forEach((k, v) -> {
            if (ProducerConfig.configNames().contains(k)) {
                producer.put(k, v);
            }
        });
        producer.putAll(config.producer());
        producer.put(ProducerConfig.CLIENT_ID_CONFIG, "device-gateway-" + name);
        return new OrderedKafkaWriter(producer, name, onRetry);
    }
}
