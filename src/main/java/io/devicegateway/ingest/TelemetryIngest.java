package io.devicegateway.ingest;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

import jakarta.inject.Inject;
import jakarta.inject.Singleton;

import org.apache.kafka.common.header.internals.RecordHeaders;
import org.eclipse.microprofile.reactive.messaging.Channel;
import org.eclipse.microprofile.reactive.messaging.Emitter;
import org.eclipse.microprofile.reactive.messaging.Message;
import org.eclipse.microprofile.reactive.messaging.Metadata;
import org.eclipse.microprofile.reactive.messaging.OnOverflow;
import org.jboss.logging.Logger;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.Envelopes;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.platform.KafkaTopics;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.devicegateway.v1.DeviceMessage;
import io.devicegateway.v1.MessageKind;
import io.smallrye.reactive.messaging.kafka.api.OutgoingKafkaRecordMetadata;
import io.vertx.core.Vertx;

/**
 * MQTT to Kafka, at least once: every device message becomes one Kafka record (key = device id, value =
 * {@link DeviceMessage}) and the MQTT PUBACK is sent only from the Kafka acknowledgement of that record.
 * Bad input becomes a dead-letter record, acknowledged the same way, so it neither stops the stream nor
 * disappears.
 */
@Singleton
public class TelemetryIngest implements MqttSubscription {

    private static final Logger LOG = Logger.getLogger(TelemetryIngest.class);
    private static final long MAX_RETRY_DELAY_MS = 10_000;

    private final IngestConfig config;
    private final KafkaTopics topics;
    private final IngestMetrics metrics;
    private final Vertx vertx;
    private final Emitter<byte[]> kafka;
    @Inject
    MqttConnection connection;

    TelemetryIngest(IngestConfig config, KafkaTopics topics, IngestMetrics metrics, Vertx vertx,
            // unbounded here because maxInFlight bounds it: the socket is paused before this buffer can grow
            @Channel("ingest") @OnOverflow(OnOverflow.Strategy.UNBOUNDED_BUFFER) Emitter<byte[]> kafka) {
        this.config = config;
        this.topics = topics;
        this.metrics = metrics;
        this.vertx = vertx;
        this.kafka = kafka;
    }

    @Override
    public List<String> filters() {
        return config.filters();
    }

    @Override
    public void onMessage(InboundMessage message) {
        if (metrics.inFlight.incrementAndGet() >= config.maxInFlight()) {
            connection.pauseInbound();
        }
        DeviceTopic.Parsed parsed = DeviceTopic.parse(message.topic());
        RejectReason rejection = parsed.rejection();
        if (rejection == null && parsed.topic().kind() != TopicKind.TELEMETRY
                && parsed.topic().kind() != TopicKind.EVENTS) {
            rejection = RejectReason.TOPIC_NOT_IN_GRAMMAR; // e.g. a status topic caught by a too-wide filter
        }
        int size = message.payload().length();
        if (rejection == null && size == 0) {
            rejection = RejectReason.EMPTY_PAYLOAD;
        }
        if (rejection == null && size > config.maxPayloadBytes()) {
            rejection = RejectReason.PAYLOAD_TOO_LARGE;
        }
        if (rejection != null) {
            deadLetter(message, parsed, rejection);
            return;
        }
        DeviceTopic topic = parsed.topic();
        MessageKind kind = Envelopes.kindOf(topic.kind());
        byte[] value = envelope(message, topic.deviceId(), kind, topic.subtopic())
                .setPayload(com.google.protobuf.ByteString.copyFrom(message.payload().getBytes()))
                .build().toByteArray();
        RecordHeaders headers = headers(topic.deviceId(), message.topic());
        headers.add(Envelopes.HEADER_KIND, topic.kind().level().getBytes(StandardCharsets.UTF_8));
        String kafkaTopic = kind == MessageKind.TELEMETRY ? topics.telemetry() : topics.events();
        send(new Record(message, kafkaTopic, topic.deviceId(), value, headers, kind, null));
    }

    private void deadLetter(InboundMessage message, DeviceTopic.Parsed parsed, RejectReason reason) {
        if (LOG.isDebugEnabled()) {
            LOG.debugf("Dead-lettering message on %s: %s", message.topic(), reason.code());
        }
        String deviceId = parsed.ok() ? parsed.topic().deviceId() : "";
        DeviceMessage.Builder envelope = envelope(message, deviceId,
                parsed.ok() ? Envelopes.kindOf(parsed.topic().kind()) : MessageKind.MESSAGE_KIND_UNSPECIFIED,
                parsed.ok() ? parsed.topic().subtopic() : "");
        if (reason != RejectReason.PAYLOAD_TOO_LARGE) {
            envelope.setPayload(com.google.protobuf.ByteString.copyFrom(message.payload().getBytes()));
        }
        RecordHeaders headers = headers(deviceId, message.topic());
        headers.add(Envelopes.HEADER_REASON, reason.code().getBytes(StandardCharsets.UTF_8));
        headers.add(Envelopes.HEADER_PAYLOAD_SIZE,
                Integer.toString(message.payload().length()).getBytes(StandardCharsets.UTF_8));
        // keyed by device when the id is valid, else by topic, so one source's rejects stay in order
        String key = deviceId.isEmpty() ? message.topic() : deviceId;
        send(new Record(message, topics.dlq(), key, envelope.build().toByteArray(), headers, null, reason));
    }

    private DeviceMessage.Builder envelope(InboundMessage message, String deviceId, MessageKind kind, String stream) {
        return Envelopes.envelope(deviceId, kind, stream, message.topic(), message.receivedAtMillis(),
                connection.clientId(), message.qos(), message.duplicate());
    }

    private static RecordHeaders headers(String deviceId, String mqttTopic) {
        RecordHeaders headers = new RecordHeaders();
        headers.add(Envelopes.HEADER_DEVICE_ID, deviceId.getBytes(StandardCharsets.UTF_8));
        headers.add(Envelopes.HEADER_MQTT_TOPIC, mqttTopic.getBytes(StandardCharsets.UTF_8));
        return headers;
    }

    /** One Kafka write and what to do once Kafka has (or refuses) it. */
    private record Record(InboundMessage source, String topic, String key, byte[] value, RecordHeaders headers,
            MessageKind kind, RejectReason reason) {
    }

    private void send(Record record) {
        send(record, config.retryInitialDelay().toMillis());
    }

    private void send(Record record, long nextRetryDelayMs) {
        OutgoingKafkaRecordMetadata<String> metadata = OutgoingKafkaRecordMetadata.<String> builder()
                .withTopic(record.topic()).withKey(record.key()).withHeaders(record.headers()).build();
        kafka.send(Message.of(record.value(), Metadata.of(metadata),
                () -> written(record),
                failure -> refused(record, failure, nextRetryDelayMs)));
    }

    private CompletionStage<Void> written(Record record) {
        record.source().ack();
        if (record.reason() != null) {
            metrics.deadLettered(record.reason());
        } else {
            metrics.ingested(record.kind(), record.source().receivedAtNanos());
        }
        if (metrics.inFlight.decrementAndGet() <= config.maxInFlight() / 2) {
            connection.resumeInbound();
        }
        return CompletableFuture.completedFuture(null);
    }

    /** Kafka refused the record after its own retries: try again later, never drop it, never ack it. */
    private CompletionStage<Void> refused(Record record, Throwable failure, long delayMs) {
        metrics.retried();
        LOG.warnf("Kafka write to %s failed (%s); retrying in %d ms", record.topic(), failure.toString(), delayMs);
        vertx.setTimer(delayMs, id -> send(record, Math.min(delayMs * 2, MAX_RETRY_DELAY_MS)));
        return CompletableFuture.completedFuture(null);
    }
}
