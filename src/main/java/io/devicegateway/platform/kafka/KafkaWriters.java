package io.devicegateway.platform.kafka;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.smallrye.common.annotation.Identifier;

/**
 * Creates {@link OrderedKafkaWriter}s from the shared {@code kafka.*} settings plus the gateway's producer defaults,
 * registers their meters ({@code gateway_kafka_writer_*{writer}}) and lists them for readiness.
 */
@ApplicationScoped
public class KafkaWriters {

    @Inject
    @Identifier("default-kafka-broker")
    Map<String, Object> kafkaConfig;
    @Inject
    GatewayKafkaConfig config;
    @Inject
    MeterRegistry registry;

    private final List<OrderedKafkaWriter> writers = new CopyOnWriteArrayList<>();

    /** No record is ever given up by the producer, and none is duplicated by its retries. */
    static Map<String, Object> defaults() {
        Map<String, Object> defaults = new HashMap<>();
        defaults.put(ProducerConfig.ACKS_CONFIG, "all");
        defaults.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        defaults.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        // the writer already collects records while they keep coming (gateway.kafka.writer.linger); 1 ms lets the
        // producer put each handful it hands over into one request
        defaults.put(ProducerConfig.LINGER_MS_CONFIG, "1");
        defaults.put(ProducerConfig.BATCH_SIZE_CONFIG, "131072");
        defaults.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, Integer.toString(Integer.MAX_VALUE));
        defaults.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "5000");
        // the writers bound what they hold themselves (gateway.ingest.max-in-flight*, gateway.kafka.writer.max-pending*);
        // the producer keeps freed batch buffers pooled up to buffer.memory, so 32 MiB each would stay on the heap
        // after a burst: 8 MiB is hundreds of batches in flight (a full buffer makes send wait, retried in place)
        defaults.put(ProducerConfig.BUFFER_MEMORY_CONFIG, Integer.toString(8 * 1024 * 1024));
        // no JMX MBeans for the client's metrics: nobody reads JMX in a pod, and registering them costs CPU at every
        // start and memory per topic and node (kafka.metric.reporters overrides)
        defaults.put(ProducerConfig.METRIC_REPORTER_CLASSES_CONFIG, "");
        // nor client metrics pushed to the broker (KIP-714): one more request per client and its classes at start
        defaults.put(ProducerConfig.ENABLE_METRICS_PUSH_CONFIG, "false");
        return defaults;
    }

    /**
     * A writer whose producer is built at once on its own thread (the caller never waits for it), which then fetches
     * the metadata of the ingest topics: for the writer needed from the first message on (ingest). Its first answer
     * from Kafka is what readiness waits for at startup ({@link #lastAnswerMillis()}).
     *
     * @param onRetry called once per in-place retry (Kafka not accepting writes), for the capability's own metrics
     */
    public OrderedKafkaWriter create(String name, Runnable onRetry) {
        return create(name, onRetry, OrderedKafkaWriter.Start.BACKGROUND,
                List.of(config.topics().telemetry(), config.topics().events()));
    }

    /**
     * @param start {@link OrderedKafkaWriter.Start#FIRST_RECORD} for a writer that may stay unused for long (command
     *              results, registry changes): no thread, producer or broker connection until its first record
     */
    public OrderedKafkaWriter create(String name, Runnable onRetry, OrderedKafkaWriter.Start start) {
        return create(name, onRetry, start, List.of());
    }

    private OrderedKafkaWriter create(String name, Runnable onRetry, OrderedKafkaWriter.Start start,
            List<String> warmUpTopics) {
        Map<String, Object> producer = defaults();
        kafkaConfig.forEach((k, v) -> {
            if (ProducerConfig.configNames().contains(k)) {
                producer.put(k, v);
            }
        });
        producer.putAll(config.producer());
        producer.put(ProducerConfig.CLIENT_ID_CONFIG, "device-gateway-" + name);
        // a wrong setting still stops the start here, although the producer itself is made later on its own thread
        Map<String, Object> check = new HashMap<>(producer);
        check.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        check.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        new ProducerConfig(check);
        Counter retries = counter("gateway.kafka.writer.retries", name,
                "Sends retried in place because Kafka was not accepting writes");
        Counter refusals = counter("gateway.kafka.writer.refusals", name,
                "Records Kafka refused for a reason other than size; held and re-sent, never dropped");
        Counter replaced = counter("gateway.kafka.writer.producer.replacements", name,
                "Producers replaced (fatal state, or a new one for each re-send round after a refusal)");
        OrderedKafkaWriter writer = new OrderedKafkaWriter(
                () -> new KafkaProducer<>(producer, new StringSerializer(), new ByteArraySerializer()), name,
                new OrderedKafkaWriter.Listener() {
                    @Override
                    public void retried() {
                        retries.increment();
                        onRetry.run();
                    }

                    @Override
                    public void refused(Exception error) {
                        refusals.increment();
                    }

                    @Override
                    public void producerReplaced(Exception cause) {
                        replaced.increment();
                    }
                }, config.writer().maxPending(), config.writer().maxPendingBytes(), start, warmUpTopics);
        writer.linger(config.writer().linger());
        Gauge.builder("gateway.kafka.writer.pending", writer, OrderedKafkaWriter::pending).tag("writer", name)
                .description("Records handed to the writer and not yet written (or refused for size)")
                .register(registry);
        Gauge.builder("gateway.kafka.writer.pending.bytes", writer, OrderedKafkaWriter::pendingBytes)
                .tag("writer", name).description("Key and value bytes of the pending records").register(registry);
        Gauge.builder("gateway.kafka.writer.stalled.seconds", writer, w -> w.stalledMillis() / 1000.0)
                .tag("writer", name).description("How long pending records have waited without one being written")
                .register(registry);
        writers.add(writer);
        return writer;
    }

    private Counter counter(String meter, String writer, String description) {
        return Counter.builder(meter).tag("writer", writer).description(description).register(registry);
    }

    /** The producers' effective batch.size (defaults, then kafka.*, then gateway.kafka.producer.*). */
    public int batchSize() {
        Object v = config.producer().get(ProducerConfig.BATCH_SIZE_CONFIG);
        if (v == null) {
            v = kafkaConfig.get(ProducerConfig.BATCH_SIZE_CONFIG);
        }
        return Integer.parseInt(String.valueOf(v == null ? defaults().get(ProducerConfig.BATCH_SIZE_CONFIG) : v));
    }

    /** When Kafka last answered any writer (a record written, or the ingest writer's start), epoch millis; 0 = never. */
    public long lastAnswerMillis() {
        long last = 0;
        for (OrderedKafkaWriter writer : writers) {
            last = Math.max(last, writer.lastAnswerMillis());
        }
        return last;
    }

    /** Every writer made so far (for readiness). */
    public List<OrderedKafkaWriter> writers() {
        return writers;
    }
}
