package io.devicegateway.platform;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import io.devicegateway.bench.DeviceSimulator;
import io.devicegateway.testing.Agents;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;

/**
 * Pods replaced the way Kubernetes replaces them: a replica is killed -9 under load and its replacement starts under
 * a new pod name (new HOSTNAME), or nobody replaces it at all. Two packaged gateways share the subscription on a
 * stock Mosquitto, with client ids leased from Redis. Every message the broker acknowledged to a device must reach
 * Kafka: the dead replica's broker session is taken over, never orphaned.
 */
class PodReplacementIT {

    private static final int DEVICES = 10;
    private static final int PER_DEVICE = 600; // 6,000 messages at 1,000 msg/s
    private static LocalServers servers;
    private final List<GatewayProcess> gateways = new ArrayList<>();

    @BeforeAll
    static void startServers() {
        servers = LocalServers.start("pod-replacement");
    }

    @AfterAll
    static void stopServers() {
        servers.close();
    }

    @AfterEach
    void stopGateways() {
        gateways.forEach(g -> g.stop(true));
    }

    private GatewayProcess pod(String hostname) {
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        config.put("gateway.mqtt.shared-group", "replacement");
        config.put("gateway.mqtt.lease-ttl", "3s");
        config.put("gateway.mqtt.adoption-interval", "1s");
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        GatewayProcess gateway = GatewayProcess.start(config, List.of("-Xmx256m"),
                servers.workDir.resolve(hostname + ".log"), Map.of("HOSTNAME", hostname));
        gateways.add(gateway);
        return gateway.awaitReady(Duration.ofSeconds(60));
    }

    @Test
    void aReplicaReplacedUnderANewNameLosesNothing() throws Exception {
        String run = UUID.randomUUID().toString().substring(0, 6);
        GatewayProcess doomed = pod("gw-" + run + "-a");
        pod("gw-" + run + "-b");
        runWithKill(run, doomed, () -> pod("gw-" + run + "-c"));
    }

    @Test
    void aKilledReplicaThatIsNeverReplacedIsAdoptedByTheSurvivor() throws Exception {
        String run = UUID.randomUUID().toString().substring(0, 6);
        GatewayProcess doomed = pod("gw-" + run + "-a");
        GatewayProcess survivor = pod("gw-" + run + "-b");
        runWithKill(run, doomed, () -> null);
        Awaitility.await().atMost(Duration.ofSeconds(30))
                .until(() -> survivor.metric("gateway_mqtt_sessions_adopted_total") >= 1.0);
    }

    /** Publishes at 1,000 msg/s, kills {@code doomed} after ~2,000 acknowledged, then runs {@code replace}. */
    private void runWithKill(String run, GatewayProcess doomed, java.util.concurrent.Callable<?> replace)
            throws Exception {
        try (DeviceSimulator devices = new DeviceSimulator("127.0.0.1", servers.mosquitto.port, run, DEVICES,
                "devices/%s/telemetry");
                KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            Thread publisher = new Thread(() -> devices.run(PER_DEVICE, 100, 1, 1_000), "publisher");
            publisher.start();
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> devices.acknowledged() >= 2_000);
            doomed.stop(true); // kill -9: no drain, its session keeps what it had and what the broker still routes to it
            replace.call();
            publisher.join(Duration.ofSeconds(60).toMillis());
            long acknowledged = devices.acknowledged();
            assertTrue(acknowledged >= DEVICES * PER_DEVICE - 10, "the broker acknowledged " + acknowledged);

            assertEquals(0, devices.missingIn(telemetry, Duration.ofSeconds(60)));
        }
    }
}
