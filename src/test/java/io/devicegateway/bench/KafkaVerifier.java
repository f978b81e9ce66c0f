package io.devicegateway.bench;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

import io.devicegateway.v1.DeviceMessage;

/** Consumes a gateway topic from its current end and tallies the simulator's messages by device. */
final class KafkaVerifier implements AutoCloseable {

    final Tally tally = new Tally();
    private final KafkaConsumer<String, byte[]> consumer;
    private final Set<String> devices;
    private final Thread poller;
    private volatile boolean running = true;

    KafkaVerifier(String bootstrap, String topic, Set<String> devices) {
        this.devices = devices;
        consumer = new KafkaConsumer<>(Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false",
                ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "5",
                // bench.verifier.fetch-min-bytes: with the default 1 byte, at tens of thousands of records per second
                // the verifier makes a fetch request for every handful, which costs the Kafka broker and this process
                // CPU that the measured path then lacks on a 2-core machine
                ConsumerConfig.FETCH_MIN_BYTES_CONFIG, System.getProperty("bench.verifier.fetch-min-bytes", "1"),
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "5000"),
                new StringDeserializer(), new ByteArrayDeserializer());
        List<TopicPartition> partitions = consumer.partitionsFor(topic, Duration.ofSeconds(30)).stream()
                .map(p -> new TopicPartition(topic, p.partition())).toList();
        consumer.assign(partitions);
        consumer.seekToEnd(partitions);
        partitions.forEach(consumer::position); // resolve the end now, before anything is sent
        poller = new Thread(this::poll, "kafka-verifier");
        poller.start();
    }

    private void poll() {
        while (running) {
            for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(50))) {
                if (record.key() != null && devices.contains(record.key())) {
                    try {
                        DeviceMessage message = DeviceMessage.parseFrom(record.value());
                        tally.record(record.key(), message.getPayload().asReadOnlyByteBuffer());
                    } catch (Exception e) {
                        throw new IllegalStateException("undecodable record on " + record.topic(), e);
                    }
                }
            }
        }
        consumer.close();
    }

    @Override
    public void close() {
        running = false;
        try {
            poller.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
