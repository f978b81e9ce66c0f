package io.devicegateway.registry;

import java.nio.charset.StandardCharsets;
import java.time.Duration;

import jakarta.annotation.PreDestroy;
import jakarta.inject.Singleton;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.jboss.logging.Logger;

import io.devicegateway.platform.kafka.KafkaWriters;
import io.devicegateway.platform.kafka.OrderedKafkaWriter;
import io.devicegateway.v1.Device;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;

/**
 * Every registry change as a record on the compacted {@code iot.registry} (key device id; value the {@link Device}
 * after the change, never a secret; a tombstone on delete; header {@code change}). Records of one instance leave in
 * the order of the changes (one ordered writer); across replicas, {@code Device.revision} orders them.
 */
@Singleton
public class RegistryEvents {

    private static final Logger LOG = Logger.getLogger(RegistryEvents.class);

    private final OrderedKafkaWriter kafka;
    private final String topic;
    private final Vertx vertx;
    private final long timeoutMillis;

    RegistryEvents(KafkaWriters writers, RegistryConfig config, Vertx vertx) {
        this.kafka = writers.create("registry", () -> {
        }, OrderedKafkaWriter.Start.FIRST_RECORD);
        this.topic = config.topic();
        this.vertx = vertx;
        this.timeoutMillis = config.syncTimeout().toMillis();
    }

    /** False while the writer holds its bound of unwritten records (Kafka down): changes are refused UNAVAILABLE. */
    boolean accepting() {
        return kafka.hasRoom();
    }

    /**
     * Hands the record to the writer (it is never dropped); the future completes when Kafka acknowledged it, or after
     * {@code gateway.registry.sync-timeout} (the writer keeps it and writes it when Kafka returns).
     */
    Future<Void> changed(String change, Device device) {
        return send(change, device.getDeviceId(), device.toByteArray());
    }

    Future<Void> deleted(String deviceId) {
        return send("deleted", deviceId, null);
    }

    private Future<Void> send(String change, String deviceId, byte[] value) {
        Promise<Void> done = Promise.promise();
        ProducerRecord<String, byte[]> record = new ProducerRecord<>(topic, deviceId, value);
        record.headers().add("change", change.getBytes(StandardCharsets.UTF_8));
        long timer = vertx.setTimer(timeoutMillis, id -> done.tryComplete());
        kafka.send(record, (metadata, error) -> {
            vertx.cancelTimer(timer);
            if (error != null) {
                LOG.errorf("Kafka refused the %s record of device %s: %s", change, deviceId, error.toString());
            }
            done.tryComplete();
        });
        return done.future();
    }

    /** Bounded even while Kafka is down (0.5 + 0.5 s, inside the shutdown budget: README, Shutdown). */
    @PreDestroy
    void close() {
        kafka.flush(Duration.ofMillis(500));
        kafka.close(Duration.ofMillis(500));
    }
}
