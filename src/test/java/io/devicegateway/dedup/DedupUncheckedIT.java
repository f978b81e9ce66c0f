package io.devicegateway.dedup;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt5.Mqtt5BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;

/**
 * {@code gateway.dedup.on-unavailable=unchecked}: with Redis down, numbered messages are not held; they are written at
 * once, marked {@code dedup=unchecked}, and counted. Nothing is lost to the missing check.
 */
class DedupUncheckedIT {

    private static LocalServers servers;
    private static GatewayProcess gateway;

    @BeforeAll
    static void start() {
        servers = LocalServers.start("dedup-unchecked");
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        config.put("gateway.dedup.on-unavailable", "unchecked");
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        gateway = GatewayProcess.start(config, List.of("-Xmx256m"), servers.workDir.resolve("gateway.log"),
                Map.of("HOSTNAME", "dedup-unchecked")).awaitReady(Duration.ofSeconds(60));
    }

    @AfterAll
    static void stop() {
        gateway.stop(false);
        servers.close();
    }

    @Test
    void writesNumberedMessagesMarkedUncheckedWhileRedisIsDown() {
        String id = "unchecked-" + UUID.randomUUID().toString().substring(0, 8);
        Mqtt5BlockingClient device = MqttClient.builder().useMqttVersion5().identifier("dedup-it-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildBlocking();
        device.connect();
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            servers.redis.stop();
            for (int seq = 0; seq < 10; seq++) {
                device.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                        .payload(Integer.toString(seq).getBytes(StandardCharsets.UTF_8))
                        .userProperties().add("seq", Integer.toString(seq)).applyUserProperties().send();
            }
            List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> id.equals(r.key()), 10,
                    Duration.ofSeconds(60));
            assertEquals(10, records.size());
            for (int i = 0; i < 10; i++) {
                assertEquals(Integer.toString(i), KafkaRecords.header(records.get(i), "sequence"), "in order");
                assertEquals("unchecked", KafkaRecords.header(records.get(i), "dedup"));
            }
            Awaitility.await().atMost(Duration.ofSeconds(10))
                    .until(() -> gateway.metric("gateway_dedup_unchecked_total") >= 10.0);
            Awaitility.await().atMost(Duration.ofSeconds(10))
                    .until(() -> gateway.metric("gateway_ingest_in_flight") == 0.0); // all acknowledged
        } finally {
            servers.redis.start();
            device.disconnect();
        }
    }
}
