package io.devicegateway.ingest;

import java.nio.charset.StandardCharsets;

import jakarta.inject.Singleton;

import org.apache.kafka.common.header.internals.RecordHeaders;
import org.jboss.logging.Logger;

import com.google.protobuf.UnsafeByteOperations;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.Envelopes;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.dedup.Deduplicator;
import io.devicegateway.platform.kafka.GatewayKafkaConfig;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.session.SessionStore;
import io.devicegateway.v1.DeviceMessage;
import io.devicegateway.v1.MessageKind;

/**
 * What ingest does with one device message before Kafka (the {@code device-messages} → {@code device-records}
 * channel step): checks the topic and payload, builds the envelope and
 * headers, maps the MQTT 5 properties, reads the device's sequence, runs the device functions, and returns the
 * record to write: the device record, or a dead letter saying why not.
 */
@Singleton
public class IngestPipeline {

    private static final Logger LOG = Logger.getLogger(IngestPipeline.class);

    private final IngestConfig config;
    private final GatewayKafkaConfig.Topics topics;
    private final Deduplicator dedup;
    private final DeviceFunctions functions;
    private final MqttConnection connection;
    private final SessionStore sessions;

    IngestPipeline(IngestConfig config, GatewayKafkaConfig kafkaConfig, Deduplicator dedup, DeviceFunctions functions,
            MqttConnection connection, SessionStore sessions) {
        this.config = config;
        this.topics = kafkaConfig.topics();
        this.dedup = dedup;
        this.functions = functions;
        this.connection = connection;
        this.sessions = sessions;
    }

    /**
     * The record to write for this message (device data or a dead letter), or null when a device function dropped
     * it: the caller then acknowledges it. Runs on the caller's thread (the MQTT event loop); never blocks.
     */
    DeviceRecord process(InboundMessage message) {
        DeviceTopic.Parsed parsed = DeviceTopic.parse(message.topic());
        RejectReason rejection = parsed.rejection();
        if (rejection == null && parsed.topic().kind() != TopicKind.TELEMETRY
                && parsed.topic().kind() != TopicKind.EVENTS) {
            rejection = RejectReason.TOPIC_NOT_IN_GRAMMAR; // e.g. a status topic caught by a too-wide filter
        }
        int size = message.payloadBytes().length;
        if (rejection == null && size == 0) {
            rejection = RejectReason.EMPTY_PAYLOAD;
        }
        if (rejection == null && size > config.maxPayloadBytes()) {
            rejection = RejectReason.PAYLOAD_TOO_LARGE;
        }
        if (rejection != null) {
            return deadLetter(message, parsed, rejection.code());
        }
        DeviceTopic topic = parsed.topic();
        sessions.seen(topic.deviceId(), message.receivedAtMillis());
        MessageKind kind = Envelopes.kindOf(topic.kind());
        DeviceMessage.Builder envelope = envelope(message, topic.deviceId(), kind, topic.subtopic())
                .setPayload(UnsafeByteOperations.unsafeWrap(message.payloadBytes()));
        RecordHeaders headers = headers(topic.deviceId(), message.topic());
        headers.add(Envelopes.HEADER_KIND, topic.kind().level().getBytes(StandardCharsets.UTF_8));
        Mqtt5Properties.apply(message, envelope, headers);
        dedup.readSequence(message, envelope);
        DeviceFunctions.Stop stop = functions.run(message, topic, envelope, headers);
        if (stop != null) {
            if (stop == DeviceFunctions.Stop.DROPPED) {
                return null;
            }
            DeviceRecord dead = deadLetter(message, parsed, stop.reason);
            dead.headers.add(Envelopes.HEADER_FUNCTION, stop.function.getBytes(StandardCharsets.UTF_8));
            if (stop.error != null) {
                dead.headers.add(Envelopes.HEADER_ERROR, stop.error.getBytes(StandardCharsets.UTF_8));
            }
            return dead;
        }
        // duplicate removal takes the sequence and epoch from the envelope: a device function may have set them
        if (envelope.hasSequence()) {
            headers.add(Envelopes.HEADER_SEQUENCE,
                    Long.toUnsignedString(envelope.getSequence()).getBytes(StandardCharsets.US_ASCII));
            if (envelope.hasSequenceEpoch()) {
                headers.add(Envelopes.HEADER_SEQUENCE_EPOCH,
                        Long.toUnsignedString(envelope.getSequenceEpoch()).getBytes(StandardCharsets.US_ASCII));
            }
        }
        String kafkaTopic = kind == MessageKind.TELEMETRY ? topics.telemetry() : topics.events();
        return new DeviceRecord(message, kafkaTopic, topic.deviceId(), envelope.build().toByteArray(), headers, kind,
                null, envelope.hasSequence(), envelope.getSequence(), envelope.getSequenceEpoch());
    }

    /** A dead letter for a message some capability rejected: the device's original message, with the reason. */
    DeviceRecord deadLetter(InboundMessage message, String reason) {
        return deadLetter(message, DeviceTopic.parse(message.topic()), reason);
    }

    private DeviceRecord deadLetter(InboundMessage message, DeviceTopic.Parsed parsed, String reason) {
        if (LOG.isDebugEnabled()) {
            LOG.debugf("Dead-lettering message on %s: %s", message.topic(), reason);
        }
        String deviceId = parsed.ok() ? parsed.topic().deviceId() : "";
        DeviceMessage.Builder envelope = envelope(message, deviceId,
                parsed.ok() ? Envelopes.kindOf(parsed.topic().kind()) : MessageKind.MESSAGE_KIND_UNSPECIFIED,
                parsed.ok() ? parsed.topic().subtopic() : "");
        if (!reason.equals(RejectReason.PAYLOAD_TOO_LARGE.code())
                && !reason.equals(RejectReason.RESPONSE_TOO_LARGE.code())) {
            envelope.setPayload(UnsafeByteOperations.unsafeWrap(message.payloadBytes()));
        }
        RecordHeaders headers = headers(deviceId, message.topic());
        headers.add(Envelopes.HEADER_REASON, reason.getBytes(StandardCharsets.UTF_8));
        headers.add(Envelopes.HEADER_PAYLOAD_SIZE,
                Integer.toString(message.payloadBytes().length).getBytes(StandardCharsets.UTF_8));
        // keyed by device when the id is valid, else by topic, so one source's rejects stay in order
        String key = deviceId.isEmpty() ? message.topic() : deviceId;
        return DeviceRecord.deadLetter(message, topics.dlq(), key, envelope.build().toByteArray(), headers, reason);
    }

    private DeviceMessage.Builder envelope(InboundMessage message, String deviceId, MessageKind kind, String stream) {
        return Envelopes.envelope(deviceId, kind, stream, message.topic(), message.receivedAtMillis(),
                connection.instanceId(), message.qos(), message.duplicate());
    }

    private static RecordHeaders headers(String deviceId, String mqttTopic) {
        RecordHeaders headers = new RecordHeaders();
        headers.add(Envelopes.HEADER_DEVICE_ID, deviceId.getBytes(StandardCharsets.UTF_8));
        headers.add(Envelopes.HEADER_MQTT_TOPIC, mqttTopic.getBytes(StandardCharsets.UTF_8));
        return headers;
    }
}
