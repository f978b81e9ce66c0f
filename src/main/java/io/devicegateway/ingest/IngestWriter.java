package io.devicegateway.ingest;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;

import jakarta.annotation.PreDestroy;
import jakarta.inject.Singleton;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.jboss.logging.Logger;

import io.devicegateway.contract.Envelopes;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.dedup.Deduplicator;
import io.devicegateway.platform.kafka.GatewayKafkaConfig;
import io.devicegateway.platform.kafka.KafkaWriters;
import io.devicegateway.platform.kafka.OrderedKafkaWriter;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.v1.DeviceMessage;

/**
 * Writes ingest's records to Kafka, at least once, and settles their MQTT messages only from the Kafka
 * acknowledgement: the one writer behind the {@code device-gateway-kafka} connector and the dead letters of presence
 * and responses. Records leave in the order handed in through one {@link OrderedKafkaWriter}; numbered device data
 * passes duplicate removal first, in each device's arrival order.
 * Bad input becomes a dead-letter record, acknowledged the same way, so it neither stops the stream nor disappears.
 */
@Singleton
public class IngestWriter implements Deduplicator.Sink {

    private static final Logger LOG = Logger.getLogger(IngestWriter.class);

    private final GatewayKafkaConfig.Topics topics;
    private final IngestMetrics metrics;
    private final OrderedKafkaWriter kafka;
    private final Deduplicator dedup;
    private final InFlight inFlight;
    private final IngestPipeline pipeline;
    private final AtomicBoolean failureLogged = new AtomicBoolean();

    IngestWriter(GatewayKafkaConfig kafkaConfig, IngestMetrics metrics, KafkaWriters writers, Deduplicator dedup,
            InFlight inFlight, IngestPipeline pipeline) {
        this.topics = kafkaConfig.topics();
        this.metrics = metrics;
        this.dedup = dedup;
        this.inFlight = inFlight;
        this.pipeline = pipeline;
        dedup.sink(this);
        this.kafka = writers.create("ingest", metrics::retried);
    }

    /** Writes a record; its MQTT message is acknowledged once Kafka has it (or it proved a duplicate). Never blocks. */
    void write(DeviceRecord record) {
        if (record.reason != null) {
            send(record); // dead letters are not numbered
            return;
        }
        if (record.numbered && dedup.enabled()) {
            Deduplicator.Ticket ticket = dedup.ticket(record.key, record.epoch, record.sequence, record.topic);
            record.ticket = ticket;
            ticket.attach(record);
            dedup.submit(ticket);
            return;
        }
        if (!dedup.passThrough(record.key, record)) {
            send(record); // the plain path: nothing of this device is waiting in duplicate removal
        }
    }

    /** From duplicate removal, in the device's arrival order: write this copy ({@code mark}: header dedup). */
    @Override
    public void write(Deduplicator.Ticket ticket, String mark) {
        DeviceRecord record = (DeviceRecord) ticket.message();
        if (mark != null) {
            record.headers.add(Envelopes.HEADER_DEDUP, mark.getBytes(StandardCharsets.US_ASCII));
        }
        send(record);
    }

    /** From duplicate removal: this copy's sequence is already in Kafka; the broker may forget it. */
    @Override
    public void duplicate(Deduplicator.Ticket ticket) {
        DeviceRecord record = (DeviceRecord) ticket.message();
        if (LOG.isDebugEnabled()) {
            LOG.debugf("Dropping a duplicate of %s epoch %s sequence %s", record.key,
                    Long.toUnsignedString(ticket.epoch()), Long.toUnsignedString(ticket.sequence()));
        }
        acknowledge(record);
    }

    /**
     * Dead-letters a message another capability received and rejected (a bad status or response), with the same
     * guarantee: the message is acknowledged once its dead-letter record is in Kafka.
     */
    public void reject(InboundMessage message, RejectReason reason) {
        inFlight.take(message);
        send(pipeline.deadLetter(message, reason.code()));
    }

    /**
     * A step after receipt failed on an ingest message (a channel nack, an unexpected exception): dead-letter it as
     * {@code processing-failed} (header {@code error}: the cause's class), acknowledged once that is in Kafka. The
     * message is already counted in flight. Nothing happens if it was already settled.
     */
    void processingFailed(InboundMessage message, Throwable cause) {
        if (message.settled()) {
            return;
        }
        if (failureLogged.compareAndSet(false, true)) {
            LOG.errorf(cause, "Ingest processing failed on a message (a nack, or an error outside any device function); "
                    + "it is dead-lettered as processing-failed. Logged once with its stack trace; DEBUG on %s shows "
                    + "every one", IngestWriter.class.getName());
        } else if (LOG.isDebugEnabled()) {
            LOG.debugf(cause, "Ingest processing failed on a message on %s", message.topic());
        }
        DeviceRecord dead = pipeline.deadLetter(message, RejectReason.PROCESSING_FAILED.code());
        dead.headers.add(Envelopes.HEADER_ERROR, (cause == null ? "unknown" : cause.getClass().getName())
                .getBytes(StandardCharsets.UTF_8));
        send(dead);
    }

    private void send(DeviceRecord record) {
        kafka.send(new ProducerRecord<>(record.topic, null, record.key, record.value, record.headers),
                (metadata, error) -> {
                    if (error == null) {
                        written(record);
                    } else {
                        rejectedByKafka(record, error);
                    }
                });
    }

    /** On the producer's I/O thread, once Kafka has the record: now the broker may forget the message. */
    private void written(DeviceRecord record) {
        if (record.ticket != null) {
            dedup.written(record.ticket); // committed in Redis in the background; the PUBACK does not wait for it
        }
        acknowledge(record);
        if (record.reason != null) {
            metrics.deadLettered(record.reason);
        } else {
            metrics.ingested(record.kind, record.source.receivedAtNanos());
        }
    }

    /**
     * The channel message's ack (it may carry acks chained by other steps), then the source's own: a no-op when the
     * first reached it, and the PUBACK when a step replaced the message without chaining its ack.
     */
    private void acknowledge(DeviceRecord record) {
        if (record.message != null) {
            try {
                record.message.ack();
            } catch (RuntimeException e) {
                LOG.warnf("A chained ack on the device-records channel failed (%s); acknowledging the MQTT message "
                        + "anyway: Kafka has its record", e.toString());
            }
        }
        inFlight.ack(record.source);
    }

    /**
     * Kafka refused the record for its size (over the broker's or topic's limit; the writer retries every other
     * refusal until it is written): it becomes a dead letter without its payload. A dead letter Kafka refuses for
     * size is not acknowledged: the broker keeps the message and redelivers it after a reconnect.
     */
    private void rejectedByKafka(DeviceRecord record, Exception error) {
        if (record.reason == null) {
            LOG.warnf("Kafka refused a record for %s for its size (%s); dead-lettering it without its payload",
                    record.topic, error.toString());
            RecordHeaders headers = new RecordHeaders(record.headers.toArray());
            headers.add(Envelopes.HEADER_REASON, RejectReason.KAFKA_REJECTED.code().getBytes(StandardCharsets.UTF_8));
            headers.add(Envelopes.HEADER_PAYLOAD_SIZE,
                    Integer.toString(record.source.payloadBytes().length).getBytes(StandardCharsets.UTF_8));
            byte[] withoutPayload;
            try {
                withoutPayload = DeviceMessage.parseFrom(record.value).toBuilder().clearPayload().build().toByteArray();
            } catch (com.google.protobuf.InvalidProtocolBufferException e) {
                throw new IllegalStateException(e); // we wrote it ourselves
            }
            DeviceRecord dead = DeviceRecord.deadLetter(record.source, topics.dlq(), record.key, withoutPayload, headers,
                    RejectReason.KAFKA_REJECTED.code());
            dead.ticket = record.ticket;
            dead.message = record.message;
            send(dead);
        } else {
            LOG.errorf("Kafka rejected a dead letter for %s (%s); the broker keeps the message", record.key,
                    error.toString());
            inFlight.abandon(record.source);
        }
    }

    /** Bounded even while Kafka is down: what is not written by then stays unacknowledged on the broker. */
    @PreDestroy
    void close() {
        kafka.flush(Duration.ofSeconds(2));
        kafka.close(Duration.ofSeconds(1));
        dedup.close(Duration.ofMillis(500));
    }
}
