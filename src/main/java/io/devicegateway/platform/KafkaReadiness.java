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
 * Kafka reachability for the readiness probe. The cluster is checked in the background every two seconds, so
 * the probe itself never waits on a broker that is down; it reports the last result.
 */
@Readiness
@ApplicationScoped
public class KafkaReadiness implements HealthCheck {

    private static final org.jboss.logging.Logger LOG = org.jboss.logging.Logger.getLogger(KafkaReadiness.class);

    private static final long INTERVAL_MS = 2_000;
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

    private Admin admin;
    private volatile long lastSuccessMillis;
    private volatile String lastError = "not checked yet";

    void start(@Observes StartupEvent event) {
        Map<String, Object> config = new HashMap<>();
        kafkaConfig.forEach((k, v) -> {
            if (AdminClientConfig.configNames().contains(k)) {
                config.put(k, v);
            }
        });
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) INTERVAL_MS);
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) INTERVAL_MS);
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, "device-gateway-readiness");
        admin = Admin.create(config);
        check();
        vertx.setPeriodic(INTERVAL_MS, id -> check());
    }

    private void check() {
        admin.describeCluster(new DescribeClusterOptions().timeoutMs((int) INTERVAL_MS)).nodes()
                .whenComplete((nodes, error) -> {
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
        boolean up = System.currentTimeMillis() - lastSuccessMillis < STALE_AFTER_MS;
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

    @PreDestroy
    void close() {
        if (admin != null) {
            admin.close(java.time.Duration.ofSeconds(1));
        }
    }
}
