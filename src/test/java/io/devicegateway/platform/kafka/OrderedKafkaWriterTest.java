package io.devicegateway.platform.kafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;

/**
 * The writer against a real Kafka broker: every record it takes ends in exactly one outcome, also when the producer
 * under it becomes unusable ({@code send} throws without calling back) or a record is too large for the topic.
 */
class OrderedKafkaWriterTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(60);
    private static LocalServers servers;

    @BeforeAll
    static void start() {
        servers = LocalServers.start("writer");
    }

    @AfterAll
    static void stop() {
        servers.close();
    }

    private static Map<String, Object> producerConfig() {
        Map<String, Object> config = new HashMap<>(KafkaWriters.defaults());
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, servers.kafka.bootstrapServers());
        return config;
    }

    @Test
    void replacesAProducerThatThrowsAndSettlesEveryRecordExactlyOnce() {
        String key = "dev-" + UUID.randomUUID();
        List<Producer<String, byte[]>> made = new CopyOnWriteArrayList<>();
        AtomicInteger replaced = new AtomicInteger();
        OrderedKafkaWriter writer = new OrderedKafkaWriter(() -> {
            Producer<String, byte[]> p = new KafkaProducer<>(producerConfig(), new StringSerializer(),
                    new ByteArraySerializer());
            made.add(p);
            return p;
        }, "test", new OrderedKafkaWriter.Listener() {
            @Override
            public void producerReplaced(Exception cause) {
                replaced.incrementAndGet();
            }
        }, 100_000, 1L << 30);
        int count = 2_000;
        Map<Integer, AtomicInteger> outcomes = new ConcurrentHashMap<>();
        List<Exception> errors = new CopyOnWriteArrayList<>();
        try (KafkaRecords records = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            for (int i = 0; i < count; i++) {
                int n = i;
                if (i == count / 2) {
                    // closed under the writer: the next send() throws IllegalStateException without calling back,
                    // and what it had not acknowledged yet fails through the callbacks
                    made.get(0).close(Duration.ZERO);
                }
                writer.send(new ProducerRecord<>("iot.telemetry", key, Integer.toString(n).getBytes(StandardCharsets.UTF_8)),
                        (metadata, error) -> {
                            outcomes.computeIfAbsent(n, x -> new AtomicInteger()).incrementAndGet();
                            if (error != null) {
                                errors.add(error);
                            }
                        });
            }
            Awaitility.await().atMost(TIMEOUT).until(() -> writer.pending() == 0);
            assertEquals(count, outcomes.size(), "every record settled");
            assertTrue(outcomes.values().stream().allMatch(c -> c.get() == 1), "each exactly once");
            assertTrue(errors.isEmpty(), "no error reached the callers: " + errors);
            assertTrue(replaced.get() >= 1, "the broken producer was replaced");

            // all in Kafka, and in order of first appearance (a re-send may repeat one, at least once)
            List<ConsumerRecord<String, byte[]>> got = records.await(r -> key.equals(r.key()), count, TIMEOUT);
            Set<Integer> firstSeen = new LinkedHashSet<>();
            for (ConsumerRecord<String, byte[]> r : got) {
                firstSeen.add(Integer.parseInt(new String(r.value(), StandardCharsets.UTF_8)));
            }
            assertEquals(count, firstSeen.size());
            List<Integer> order = new ArrayList<>(firstSeen);
            for (int i = 0; i < count; i++) {
                assertEquals(i, order.get(i), "order at " + i);
            }
        } finally {
            writer.close(Duration.ofSeconds(5));
        }
    }

    @Test
    void reportsOnlyASizeRefusalToTheCaller() throws Exception {
        String topic = "writer-small-" + UUID.randomUUID().toString().substring(0, 8);
        try (var admin = org.apache.kafka.clients.admin.Admin.create(
                Map.<String, Object>of("bootstrap.servers", servers.kafka.bootstrapServers()))) {
            admin.createTopics(List.of(new org.apache.kafka.clients.admin.NewTopic(topic, 1, (short) 1)
                    .configs(Map.of("max.message.bytes", "1000")))).all().get();
        }
        OrderedKafkaWriter writer = new OrderedKafkaWriter(
                () -> new KafkaProducer<>(producerConfig(), new StringSerializer(), new ByteArraySerializer()), "test",
                new OrderedKafkaWriter.Listener() {
                }, 100_000, 1L << 30);
        List<Exception> errors = new CopyOnWriteArrayList<>();
        AtomicInteger written = new AtomicInteger();
        try {
            writer.send(new ProducerRecord<>(topic, "k", new byte[5_000]), (m, e) -> {
                if (e != null) {
                    errors.add(e);
                }
            });
            // alone in its batch: kafka-clients 4.1 re-splits a too-large batch of several records into the same
            // batch forever (KAFKA-8350, fixed in 4.2), which is why batch.size must stay under max.message.bytes
            Awaitility.await().atMost(TIMEOUT).until(() -> errors.size() == 1);
            writer.send(new ProducerRecord<>(topic, "k", new byte[10]), (m, e) -> {
                if (e == null) {
                    written.incrementAndGet();
                }
            });
            Awaitility.await().atMost(TIMEOUT).until(() -> writer.pending() == 0);
            assertEquals(1, errors.size());
            assertTrue(OrderedKafkaWriter.isSizeRefusal(errors.get(0)), errors.get(0).toString());
            assertEquals(1, written.get(), "the record behind it is written");
        } finally {
            writer.close(Duration.ofSeconds(5));
        }
    }

    @Test
    void closeReturnsWithinItsTimeoutWhileKafkaIsDown() {
        LocalServers own = LocalServers.start("writer-down");
        try {
            Map<String, Object> config = new HashMap<>(KafkaWriters.defaults());
            config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, own.kafka.bootstrapServers());
            OrderedKafkaWriter writer = new OrderedKafkaWriter(
                    () -> new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer()), "test",
                    new OrderedKafkaWriter.Listener() {
                    }, 100_000, 1L << 30);
            own.kafka.stop(true);
            AtomicInteger settled = new AtomicInteger();
            for (int i = 0; i < 100; i++) {
                writer.send(new ProducerRecord<>("iot.telemetry", "k", new byte[10]), (m, e) -> settled.incrementAndGet());
            }
            assertTrue(!writer.flush(Duration.ofSeconds(1)), "nothing can be written");
            long started = System.nanoTime();
            writer.close(Duration.ofSeconds(2));
            long tookMillis = (System.nanoTime() - started) / 1_000_000;
            assertTrue(tookMillis < 4_000, "close took " + tookMillis + " ms");
            assertEquals(0, settled.get(), "nothing reported as written or refused: the sources keep their messages");
        } finally {
            own.close();
        }
    }

    @Test
    void aFirstRecordWriterMakesNoThreadNorProducerUntilItsFirstRecord() {
        AtomicInteger made = new AtomicInteger();
        String name = "lazy-" + UUID.randomUUID().toString().substring(0, 8);
        OrderedKafkaWriter writer = new OrderedKafkaWriter(() -> {
            made.incrementAndGet();
            return new KafkaProducer<>(producerConfig(), new StringSerializer(), new ByteArraySerializer());
        }, name, new OrderedKafkaWriter.Listener() {
        }, 100, 1L << 20, OrderedKafkaWriter.Start.FIRST_RECORD, List.of());
        try {
            assertEquals(0, made.get(), "no producer before the first record");
            assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith(name)),
                    "no sender thread before the first record");
            AtomicInteger written = new AtomicInteger();
            writer.send(new ProducerRecord<>("iot.telemetry", "k", new byte[10]), (m, e) -> {
                if (e == null) {
                    written.incrementAndGet();
                }
            });
            Awaitility.await().atMost(TIMEOUT).until(() -> written.get() == 1);
            assertEquals(1, made.get());
            assertTrue(writer.lastAnswerMillis() > 0, "a written record is an answer from Kafka");
        } finally {
            writer.close(Duration.ofSeconds(5));
        }
    }

    @Test
    void aBackgroundWriterFetchesItsTopicsMetadataBeforeAnyRecord() {
        OrderedKafkaWriter writer = new OrderedKafkaWriter(
                () -> new KafkaProducer<>(producerConfig(), new StringSerializer(), new ByteArraySerializer()),
                "warm", new OrderedKafkaWriter.Listener() {
                }, 100, 1L << 20, OrderedKafkaWriter.Start.BACKGROUND, List.of("iot.telemetry", "iot.events"));
        try {
            // what readiness waits for at startup: Kafka answered the ingest writer, no record needed
            Awaitility.await().atMost(TIMEOUT).until(() -> writer.lastAnswerMillis() > 0);
            assertEquals(0, writer.pending());
        } finally {
            writer.close(Duration.ofSeconds(5));
        }
    }

    @Test
    void aLingeringWriterKeepsTheOrderAndSettlesEveryRecord() {
        String key = "linger-" + UUID.randomUUID();
        OrderedKafkaWriter writer = new OrderedKafkaWriter(
                () -> new KafkaProducer<>(producerConfig(), new StringSerializer(), new ByteArraySerializer()),
                "linger", new OrderedKafkaWriter.Listener() {
                }, 100_000, 1L << 30, OrderedKafkaWriter.Start.BACKGROUND, List.of());
        writer.linger(Duration.ofMillis(20));
        int count = 500;
        AtomicInteger settled = new AtomicInteger();
        try (KafkaRecords records = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            for (int i = 0; i < count; i++) {
                writer.send(new ProducerRecord<>("iot.telemetry", key, Integer.toString(i).getBytes(StandardCharsets.UTF_8)),
                        (m, e) -> settled.incrementAndGet());
                if (i % 50 == 0) {
                    Awaitility.await().atMost(TIMEOUT).until(() -> writer.pending() == 0); // quiet spells between bursts
                }
            }
            Awaitility.await().atMost(TIMEOUT).until(() -> writer.pending() == 0);
            assertEquals(count, settled.get());
            List<ConsumerRecord<String, byte[]>> got = records.await(r -> key.equals(r.key()), count, TIMEOUT);
            for (int i = 0; i < count; i++) {
                assertEquals(Integer.toString(i), new String(got.get(i).value(), StandardCharsets.UTF_8), "order at " + i);
            }
        } finally {
            writer.close(Duration.ofSeconds(5));
        }
    }
}
