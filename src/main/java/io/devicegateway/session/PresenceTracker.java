package io.devicegateway.session;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Locale;

import jakarta.annotation.PreDestroy;
import jakarta.inject.Singleton;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.jboss.logging.Logger;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.ingest.IngestWriter;
import io.devicegateway.platform.kafka.GatewayKafkaConfig;
import io.devicegateway.platform.kafka.KafkaWriters;
import io.devicegateway.platform.kafka.OrderedKafkaWriter;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.devicegateway.v1.Presence;

/**
 * Presence: {@code devices/{id}/status} carries {@code online} (birth, retained) or {@code offline} (last will).
 * Each change gets a version at receipt, is written to the compacted {@code iot.presence} topic, acknowledged to
 * the broker once Kafka has it, then applied to Redis by {@link SessionStore} under the ordering rule (a stale
 * change never overwrites a newer one; a retained status only bootstraps an unknown device).
 */
@Singleton
public class PresenceTracker implements MqttSubscription {

    private static final Logger LOG = Logger.getLogger(PresenceTracker.class);

    private final SessionConfig config;
    private final SessionStore store;
    private final IngestWriter ingest;
    private final MqttConnection connection;
    private final OrderedKafkaWriter kafka;
    private final String presenceTopic;
    private static final String PAUSE_HOLDER = "presence";
    private final PresenceClock clock = new PresenceClock();

    PresenceTracker(SessionConfig config, SessionStore store, IngestWriter ingest, MqttConnection connection,
            KafkaWriters writers, GatewayKafkaConfig kafkaConfig) {
        this.config = config;
        this.store = store;
        this.ingest = ingest;
        this.connection = connection;
        this.presenceTopic = kafkaConfig.topics().presence();
        this.kafka = writers.create("presence", () -> {
        }, OrderedKafkaWriter.Start.FIRST_RECORD);
    }

    @Override
    public List<String> filters() {
        return List.of(config.statusFilter());
    }

    @Override
    public void onMessage(InboundMessage message) {
        DeviceTopic.Parsed parsed = DeviceTopic.parse(message.topic());
        if (!parsed.ok() || parsed.topic().kind() != TopicKind.STATUS) {
            ingest.reject(message, parsed.ok() ? RejectReason.TOPIC_NOT_IN_GRAMMAR : parsed.rejection());
            return;
        }
        String status = message.payload().toString(StandardCharsets.UTF_8).trim().toLowerCase(Locale.ROOT);
        if (status.isEmpty() && message.retained()) {
            message.ack(); // a cleared retained status carries no presence
            return;
        }
        if (!status.equals("online") && !status.equals("offline")) {
            ingest.reject(message, RejectReason.INVALID_STATUS);
            return;
        }
        String deviceId = parsed.topic().deviceId();
        PresenceUpdate update = new PresenceUpdate(deviceId, status.equals("online"), clock.next(),
                message.receivedAtMillis(), connection.instanceId(), message.retained());
        Presence record = Presence.newBuilder().setDeviceId(deviceId).setOnline(update.online())
                .setVersion(update.version()).setAtMs(update.atMillis()).setGatewayInstance(update.gateway())
                .setFromRetained(update.retained()).build();
        kafka.send(new ProducerRecord<>(presenceTopic, deviceId, record.toByteArray()), (metadata, error) -> {
            if (connection.inboundPausedBy(PAUSE_HOLDER) && kafka.hasRoom()) {
                connection.resumeInbound(PAUSE_HOLDER);
            }
            if (error != null) {
                LOG.errorf("Kafka refused a presence record for %s (%s); the broker keeps the message", deviceId,
                        error.toString());
                return;
            }
            message.ack();
            store.applyPresence(update);
        });
        if (!kafka.hasRoom()) {
            connection.pauseInbound(PAUSE_HOLDER); // Kafka is behind: the broker keeps the rest
        }
    }

    /** Bounded: a presence record not written by then stays unacknowledged on the broker. */
    @PreDestroy
    void close() {
        kafka.flush(Duration.ofSeconds(1));
        kafka.close(Duration.ofSeconds(1));
    }
}
