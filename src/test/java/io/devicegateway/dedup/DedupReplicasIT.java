package io.devicegateway.dedup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
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
 * Two packaged gateways sharing the subscription (so one device's copies reach either replica): every numbered
 * message lands once, whichever connection and replica bring its copies; with Redis down, numbered messages are
 * held, not written and not lost, and land once each when it returns.
 */
class DedupReplicasIT {

    private static LocalServers servers;
    private static final List<GatewayProcess> gateways = new ArrayList<>();

    @BeforeAll
    static void start() {
        servers = LocalServers.start("dedup-replicas");
        for (String name : List.of("a", "b")) {
            Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.shared-group", "dedup");
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            gateways.add(GatewayProcess.start(config, List.of("-Xmx256m"),
                    servers.workDir.resolve("gateway-" + name + ".log"), Map.of("HOSTNAME", "dedup-" + name)));
        }
        gateways.forEach(g -> g.awaitReady(Duration.ofSeconds(60)));
    }

    @AfterAll
    static void stop() {
        gateways.forEach(g -> g.stop(false));
        servers.close();
    }

    private static Mqtt5BlockingClient device() {
        Mqtt5BlockingClient c = MqttClient.builder().useMqttVersion5().identifier("dedup-it-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(servers.mosquitto.port).buildBlocking();
        c.connect();
        return c;
    }

    private static void publish(Mqtt5BlockingClient c, String id, int seq) {
        c.publishWith().topic("devices/" + id + "/telemetry").qos(MqttQos.AT_LEAST_ONCE)
                .payload(Integer.toString(seq).getBytes(StandardCharsets.UTF_8))
                .userProperties().add("seq", Integer.toString(seq)).add("seq-epoch", "3").applyUserProperties().send();
    }

    /** Records per sequence of {@code id}, once {@code count} distinct sequences arrived and Kafka was read to its end. */
    private static TreeMap<Integer, Integer> perSequence(KafkaRecords telemetry, String id, int count) {
        TreeMap<Integer, Integer> seen = new TreeMap<>();
        Awaitility.await().atMost(Duration.ofSeconds(60)).until(() -> {
            seen.clear();
            for (ConsumerRecord<String, byte[]> r : telemetry.drain(r -> r.key().equals(id))) {
                seen.merge(Integer.parseInt(KafkaRecords.header(r, "sequence")), 1, Integer::sum);
            }
            return seen.size() >= count;
        });
        seen.clear();
        for (ConsumerRecord<String, byte[]> r : telemetry.upToEnd(r -> r.key().equals(id))) {
            seen.merge(Integer.parseInt(KafkaRecords.header(r, "sequence")), 1, Integer::sum);
        }
        return seen;
    }

    @Test
    void twoReplicasWriteEachSequenceOnceWhicheverConnectionAndReplicaBringItsCopies() {
        String id = "twice-" + UUID.randomUUID().toString().substring(0, 8);
        Mqtt5BlockingClient first = device();
        Mqtt5BlockingClient second = device();
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            for (int seq = 0; seq < 300; seq++) {
                publish(first, id, seq);
                publish(second, id, seq);
            }
            TreeMap<Integer, Integer> seen = perSequence(telemetry, id, 300);
            assertEquals(300, seen.size());
            assertTrue(seen.values().stream().allMatch(n -> n == 1), "one record per sequence: " + seen);
            // the second copy of the last sequences may still be on its way through a replica when the records are read
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> gateways.stream()
                    .mapToDouble(g -> g.metric("gateway_ingest_duplicates_dropped_total")).sum() >= 300);
            assertEquals(300, perSequence(telemetry, id, 300).size(), "still one record per sequence");
            assertTrue(perSequence(telemetry, id, 300).values().stream().allMatch(n -> n == 1));
        } finally {
            first.disconnect();
            second.disconnect();
        }
    }

    @Test
    void holdsNumberedMessagesWhileRedisIsDownAndWritesThemOnceWhenItReturns() {
        String id = "held-" + UUID.randomUUID().toString().substring(0, 8);
        Mqtt5BlockingClient first = device();
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            servers.redis.stop();
            for (int seq = 0; seq < 20; seq++) {
                publish(first, id, seq);
            }
            Awaitility.await().during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(6))
                    .until(() -> telemetry.drain(r -> r.key().equals(id)).isEmpty());
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> gateways.stream()
                    .anyMatch(g -> g.metric("gateway_dedup_redis_unavailable") == 1.0));
            servers.redis.start();
            TreeMap<Integer, Integer> seen = perSequence(telemetry, id, 20);
            assertEquals(20, seen.size());
            assertTrue(seen.values().stream().allMatch(n -> n == 1), "one record per sequence: " + seen);
        } finally {
            first.disconnect();
        }
    }
}
