package io.devicegateway.platform;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import jakarta.inject.Inject;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.eclipse.microprofile.health.HealthCheck;
import org.eclipse.microprofile.health.HealthCheckResponse;
import org.eclipse.microprofile.health.Readiness;

import io.quarkus.runtime.StartupEvent;
import io.smallrye.common.annotation.Identifier;
import io.vertx.core.Vertx;

/**
 * Kafka reachability for the readiness probe. Kafka counts as reachable while it answered within the last six
 * seconds: a record written by any writer, the ingest writer's metadata fetch at start, or this check's
 * {@code describeCluster}, which runs in the background every two seconds so the probe itself never waits on a
 * broker that is down. At startup the ingest writer's first answer is what turns readiness UP: the admin client for
 * the periodic check is built only {@value #ADMIN_START_MS} ms after the start, off the startup path, and until its
 * first success it retries every 250 ms (a broker that is still starting, or topics the warm-up could not see).
 */
@Readiness
@ApplicationScoped
public class KafkaReadiness implements HealthCheck {

    private static final org.jboss.logging.Logger LOG = org.jboss.logging.Logger.getLogger(KafkaReadiness.class);

    private static final long INTERVAL_MS = 2_000;
    private static final long FIRST_RETRY_MS = 250;
    private static final long ADMIN_START_MS = 3_000;
    private static final long STALE_AFTER_MS = 3 * INTERVAL_MS;

    @Inject
    @Identifier("default-kafka-broker")
    Map<String, Object> kafkaConfig;
    @Inject
    Vertx vertx;
    @Inject
    io.devicegateway.platform.kafka.KafkaWriters writers;
    @Inject
    io.devicegateway.platform.kafka.GatewayKafkaConfig gatewayKafka;

    private volatile Admin admin;
    private volatile boolean closed;
    private final java.util.concurrent.atomic.AtomicBoolean adminStarted = new java.util.concurrent.atomic.AtomicBoolean();
    private volatile long lastSuccessMillis;
    private volatile String lastError = "not checked yet";

    void start(@Observes StartupEvent event) {
        // not before: building it would compete for the CPU with the first messages' path, and until then the ingest
        // writer's answers (its warm-up, then every record written) keep the reachability current
        vertx.setTimer(ADMIN_START_MS, id -> startAdmin());
    }

    private void startAdmin() {
        if (closed || !adminStarted.compareAndSet(false, true)) {
            return;
        }
        Map<String, Object> config = new HashMap<>();
        // no JMX MBeans, no metrics push to the broker (see KafkaWriters.defaults)
        config.put(AdminClientConfig.METRIC_REPORTER_CLASSES_CONFIG, "");
        config.put(AdminClientConfig.ENABLE_METRICS_PUSH_CONFIG, "false");
        kafkaConfig.forEach((k, v) -> {
            if (AdminClientConfig.configNames().contains(k)) {
                config.put(k, v);
            }
        });
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) INTERVAL_MS);
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) INTERVAL_MS);
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, "device-gateway-readiness");
        Thread init = new Thread(() -> {
            Admin made = Admin.create(config);
            admin = made;
            if (closed) {
                made.close(java.time.Duration.ZERO);
                return;
            }
            check();
        }, "kafka-readiness-init");
        init.setDaemon(true);
        init.start();
    }

    private void check() {
        if (closed) {
            return;
        }
        admin.describeCluster(new DescribeClusterOptions().timeoutMs((int) INTERVAL_MS)).nodes()
                .whenComplete((nodes, error) -> {
                    if (!closed) {
                        vertx.setTimer(lastSuccessMillis == 0 ? FIRST_RETRY_MS : INTERVAL_MS, id -> check());
                    }
                    if (error == null && !nodes.isEmpty()) {
                        lastSuccessMillis = System.currentTimeMillis();
                        lastError = null;
                        if (!topicLimitsChecked) {
                            checkTopicLimits();
                        }
                    } else {
                        lastError = error == null ? "no brokers" : error.getClass().getSimpleName();
                    }
                });
    }

    private volatile boolean topicLimitsChecked;
    private volatile String batchSizeWarning;

    /**
     * kafka-clients 4.1 splits a batch the broker refuses as too large into batches of batch.size again, forever
     * (KAFKA-8350): a topic whose max.message.bytes is below the producers' batch.size can stall a writer. Checked
     * once Kafka answers; reported in the log and the readiness data (not as DOWN: it only bites with big records).
     */
    private void checkTopicLimits() {
        topicLimitsChecked = true;
        var t = gatewayKafka.topics();
        List<org.apache.kafka.common.config.ConfigResource> resources = java.util.stream.Stream
                .of(t.telemetry(), t.events(), t.dlq(), t.presence(), t.commandResults())
                .distinct().map(name -> new org.apache.kafka.common.config.ConfigResource(
                        org.apache.kafka.common.config.ConfigResource.Type.TOPIC, name))
                .toList();
        int batchSize = writers.batchSize();
        admin.describeConfigs(resources).all().whenComplete((configs, error) -> {
            if (error != null) {
                topicLimitsChecked = false; // e.g. a topic not created yet: try again on the next check
                return;
            }
            configs.forEach((resource, config) -> {
                var entry = config.get("max.message.bytes");
                if (entry != null && entry.value() != null && Integer.parseInt(entry.value()) < batchSize) {
                    batchSizeWarning = "topic " + resource.name() + " max.message.bytes " + entry.value()
                            + " < producer batch.size " + batchSize
                            + ": set gateway.kafka.producer.\"batch.size\" at or below it (KAFKA-8350)";
                    LOG.warn(batchSizeWarning);
                }
            });
        });
    }

    @Override
    public HealthCheckResponse call() {
        boolean up = reachable();
        var response = HealthCheckResponse.named("kafka");
        if (!up && lastError != null) {
            response.withData("error", lastError);
        }
        // a reachable cluster that refuses our writes (e.g. an ACL) is as bad as an unreachable one
        long stallLimit = gatewayKafka.writer().stallTimeout().toMillis();
        for (var writer : writers.writers()) {
            long stalled = writer.stalledMillis();
            if (stalled > stallLimit) {
                up = false;
                String error = writer.lastError();
                response.withData("writer-" + writer.name(), writer.pending() + " record(s) unwritten for "
                        + stalled / 1000 + " s" + (error == null ? "" : "; last error: " + error));
            }
        }
        if (batchSizeWarning != null) {
            response.withData("warning", batchSizeWarning);
        }
        return response.status(up).build();
    }

    /** Kafka answered recently (readiness without the writers' stall check). */
    public boolean reachable() {
        long last = Math.max(lastSuccessMillis, writers.lastAnswerMillis());
        return System.currentTimeMillis() - last < STALE_AFTER_MS;
    }

    @PreDestroy
    void close() {
        closed = true;
        Admin current = admin;
        if (current != null) {
            current.close(java.time.Duration.ofSeconds(1));
        }
    }
}
