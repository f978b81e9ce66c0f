package io.devicegateway.command;

import java.time.Duration;
import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.annotation.PreDestroy;
import jakarta.inject.Singleton;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.jboss.logging.Logger;

import io.devicegateway.platform.kafka.GatewayKafkaConfig;
import io.devicegateway.platform.kafka.KafkaWriters;
import io.devicegateway.platform.kafka.OrderedKafkaWriter;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/** Writes every command outcome to {@code iot.command-results} (key = device id) and counts it. */
@Singleton
public class CommandResults {

    private static final Logger LOG = Logger.getLogger(CommandResults.class);

    private final OrderedKafkaWriter kafka;
    private final String topic;
    private final MqttConnection connection;
    private final Map<CommandOutcome, Counter> outcomes = new EnumMap<>(CommandOutcome.class);
    final Timer sendEventLatency;
    final AtomicLong queued = new AtomicLong();

    CommandResults(KafkaWriters writers, GatewayKafkaConfig kafkaConfig, MqttConnection connection,
            MeterRegistry registry) {
        this.kafka = writers.create("commands", () -> {
        }, OrderedKafkaWriter.Start.FIRST_RECORD);
        this.topic = kafkaConfig.topics().commandResults();
        this.connection = connection;
        for (CommandOutcome outcome : CommandOutcome.values()) {
            if (outcome != CommandOutcome.COMMAND_OUTCOME_UNSPECIFIED && outcome != CommandOutcome.UNRECOGNIZED) {
                outcomes.put(outcome, Counter.builder("gateway.commands").description("Command outcomes")
                        .tag("outcome", outcome.name().substring("COMMAND_".length()).toLowerCase(Locale.ROOT))
                        .register(registry));
            }
        }
        sendEventLatency = Timer.builder("gateway.sendevent.latency").description("SendEvent call duration")
                .publishPercentiles(0.5, 0.95, 0.99).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofMinutes(1))
                .register(registry);
        Gauge.builder("gateway.commands.queued", queued, AtomicLong::get)
                .description("Commands waiting in Redis for offline devices").register(registry);
    }

    public void record(CommandResult.Builder result) {
        CommandResult record = result.setAtMs(System.currentTimeMillis())
                .setGatewayInstance(connection.instanceId()).build();
        Counter counter = outcomes.get(record.getOutcome());
        if (counter != null) {
            counter.increment();
        }
        kafka.send(new ProducerRecord<>(topic, record.getDeviceId(), record.toByteArray()), (metadata, error) -> {
            if (error != null) {
                LOG.errorf("Kafka refused a command result for %s: %s", record.getCorrelationId(), error.toString());
            }
        });
    }

    /**
     * False while the results writer holds its bound of unwritten results (Kafka down or refusing): new commands
     * are then refused with UNAVAILABLE rather than queueing results without limit.
     */
    public boolean accepting() {
        return kafka.hasRoom();
    }

    /** Bounded even while Kafka is down. */
    @PreDestroy
    void close() {
        kafka.flush(Duration.ofSeconds(1));
        kafka.close(Duration.ofSeconds(1));
    }
}
