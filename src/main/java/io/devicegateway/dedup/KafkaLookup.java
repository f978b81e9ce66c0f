package io.devicegateway.dedup;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Utils;

import io.devicegateway.contract.Envelopes;

/**
 * Answers "is this numbered message already in Kafka?" for claims whose owner died between claiming and
 * committing. A record's key is its device id, so its partition is the default partitioner's
 * ({@code murmur2(key) mod partitions}); the scan starts at the first offset stamped at or after the claim time
 * (minus a margin) and reads to the end offset taken when the lookup starts, matching the headers
 * {@code device-id}, {@code sequence-epoch}, {@code sequence}. One scan per partition serves every claim being
 * resolved in it. Runs on its own thread (blocking Kafka consumer), one lookup at a time.
 */
final class KafkaLookup implements AutoCloseable {

    /** One message copy to look for. */
    record Wanted(String topic, String deviceId, long epoch, long sequence, long claimMillis) {
        String match() {
            return deviceId + "\u0000" + Long.toUnsignedString(epoch) + "\u0000" + Long.toUnsignedString(sequence);
        }
    }

    private final Map<String, Object> config;
    private final long marginMillis;
    private final long timeoutMillis;
    private KafkaConsumer<byte[], byte[]> consumer;

    KafkaLookup(Map<String, Object> kafkaConfig, Duration margin, Duration timeout) {
        this.config = new HashMap<>();
        kafkaConfig.forEach((k, v) -> {
            if (ConsumerConfig.configNames().contains(k)) {
                config.put(k, v);
            }
        });
        config.remove(ConsumerConfig.GROUP_ID_CONFIG);
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, "device-gateway-dedup-lookup");
        config.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "5000");
        config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        this.marginMillis = margin.toMillis();
        this.timeoutMillis = timeout.toMillis();
    }

    /** The subset of {@code wanted} found in Kafka. Throws when Kafka cannot be read within the timeout. */
    Set<Wanted> find(List<Wanted> wanted) {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        if (consumer == null) {
            consumer = new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        }
        Map<TopicPartition, List<Wanted>> byPartition = new HashMap<>();
        Map<String, Integer> partitions = new HashMap<>();
        for (Wanted w : wanted) {
            int count = partitions.computeIfAbsent(w.topic(), t -> {
                List<PartitionInfo> infos = consumer.partitionsFor(t, Duration.ofMillis(remaining(deadline)));
                if (infos == null || infos.isEmpty()) {
                    throw new IllegalStateException("no partitions known for " + t);
                }
                return infos.size();
            });
            int partition = Utils.toPositive(Utils.murmur2(w.deviceId().getBytes(StandardCharsets.UTF_8))) % count;
            byPartition.computeIfAbsent(new TopicPartition(w.topic(), partition), p -> new ArrayList<>()).add(w);
        }
        Set<Wanted> found = new HashSet<>();
        for (Map.Entry<TopicPartition, List<Wanted>> e : byPartition.entrySet()) {
            found.addAll(scan(e.getKey(), e.getValue(), deadline));
        }
        return found;
    }

    private Set<Wanted> scan(TopicPartition partition, List<Wanted> wanted, long deadline) {
        Map<String, Wanted> byMatch = new HashMap<>();
        long from = Long.MAX_VALUE;
        for (Wanted w : wanted) {
            byMatch.put(w.match(), w);
            from = Math.min(from, w.claimMillis() - marginMillis);
        }
        consumer.assign(List.of(partition));
        long end = consumer.endOffsets(List.of(partition), Duration.ofMillis(remaining(deadline))).get(partition);
        OffsetAndTimestamp start = consumer.offsetsForTimes(Map.of(partition, Math.max(0, from)),
                Duration.ofMillis(remaining(deadline))).get(partition);
        Set<Wanted> found = new HashSet<>();
        if (start == null) {
            return found; // nothing stamped at or after the claim time: not written
        }
        consumer.seek(partition, start.offset());
        while (consumer.position(partition, Duration.ofMillis(remaining(deadline))) < end
                && found.size() < byMatch.size()) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(Math.min(500, remaining(deadline))))) {
                if (r.offset() >= end) {
                    break;
                }
                String device = header(r, Envelopes.HEADER_DEVICE_ID);
                String seq = header(r, Envelopes.HEADER_SEQUENCE);
                if (device == null || seq == null) {
                    continue;
                }
                String epoch = header(r, Envelopes.HEADER_SEQUENCE_EPOCH);
                Wanted w = byMatch.get(device + "\u0000" + (epoch == null ? "0" : epoch) + "\u0000" + seq);
                if (w != null) {
                    found.add(w);
                }
            }
            remaining(deadline);
        }
        return found;
    }

    private long remaining(long deadline) {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
            throw new IllegalStateException("Kafka lookup did not finish within " + timeoutMillis + " ms");
        }
        return left;
    }

    private static String header(ConsumerRecord<byte[], byte[]> r, String name) {
        Header h = r.headers().lastHeader(name);
        return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }

    @Override
    public void close() {
        if (consumer != null) {
            consumer.close(Duration.ofSeconds(1));
        }
    }
}
