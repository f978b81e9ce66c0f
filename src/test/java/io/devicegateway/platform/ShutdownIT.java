package io.devicegateway.platform;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;

import io.devicegateway.bench.DeviceSimulator;
import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.v1.DeviceMessage;
import io.devicegateway.v1.SendEventRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * SIGTERM the way Kubernetes sends it, to the packaged gateway: the MQTT drain starts at once (not after open gRPC
 * calls), a SendEvent waiting for a device is answered UNAVAILABLE, every step is bounded so the process exits
 * within the pod's grace period, also while Kafka is down, and nothing the broker acknowledged is lost.
 */
class ShutdownIT {

    /** The app's budget the manifests are sized for: drain 15 s + open calls 3 s + writers and Redis 9.5 s. */
    private static final Duration BUDGET = Duration.ofSeconds(28);
    private static LocalServers servers;
    private final List<GatewayProcess> gateways = new ArrayList<>();

    @BeforeAll
    static void startServers() {
        servers = LocalServers.start("shutdown");
    }

    @AfterAll
    static void stopServers() {
        servers.close();
    }

    @AfterEach
    void stopGateways() {
        if (!servers.kafka.running()) {
            servers.kafka.start();
        }
        gateways.forEach(g -> g.stop(true));
    }

    /** One deployment's pods: {@code run} names the deployment (client-id prefix), hostname the pod. */
    private GatewayProcess pod(String run, String hostname, String sharedGroup) {
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        if (sharedGroup != null) {
            config.put("gateway.mqtt.shared-group", sharedGroup);
        }
        config.put("gateway.mqtt.client-id-prefix", "dgw-" + run);
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        GatewayProcess gateway = GatewayProcess.start(config, List.of("-Xmx256m"),
                servers.workDir.resolve(hostname + ".log"), Map.of("HOSTNAME", hostname));
        gateways.add(gateway);
        return gateway.awaitReady(Duration.ofSeconds(60));
    }

    private static void sigterm(GatewayProcess gateway) {
        ProcessHandle.of(gateway.pid()).ifPresent(ProcessHandle::destroy);
    }

    @Test
    void sigtermDuringAWaitingSendEventAnswersItUnavailableDrainsAndExitsWithinTheBudget() throws Exception {
        String run = UUID.randomUUID().toString().substring(0, 6);
        String group = "shutdown-" + run;
        GatewayProcess leaving = pod(run, "gw-" + run + "-a", group);
        pod(run, "gw-" + run + "-b", group);
        String deviceId = "silent-" + run;
        ManagedChannel channel = Agents.channel(leaving.httpPort);
        try (DeviceAgent device = new DeviceAgent(deviceId, servers.mosquitto.port).connect(); // never answers
                DeviceSimulator devices = new DeviceSimulator("127.0.0.1", servers.mosquitto.port, run, 10,
                        "devices/%s/telemetry");
                KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            var stub = Agents.stub(channel, Agents.OPS_TOKEN);
            // NOT_FOUND until the gateway has processed the device's first status message
            Awaitility.await().atMost(Duration.ofSeconds(30)).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                    .until(() -> stub.getSession(
                    io.devicegateway.v1.GetSessionRequest.newBuilder().setDeviceId(deviceId).build()).getOnline());
            CompletableFuture<Status> call = CompletableFuture.supplyAsync(() -> {
                try {
                    stub.withDeadlineAfter(90, TimeUnit.SECONDS).sendEvent(SendEventRequest.newBuilder()
                            .setDeviceId(deviceId).setName("reboot").setPayload(ByteString.copyFromUtf8("{}"))
                            .setAwaitResponse(true).setResponseTimeoutMs(60_000).build());
                    return Status.OK;
                } catch (StatusRuntimeException e) {
                    return e.getStatus();
                }
            });
            Thread publisher = new Thread(() -> devices.run(400, 100, 1, 500), "publisher"); // 4,000 at 500 msg/s
            publisher.start();
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> devices.acknowledged() >= 1_000);
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> !device.received().isEmpty());

            long sigterm = System.nanoTime();
            sigterm(leaving);
            // answered by the gateway itself at once (not cut off later when the server closes)
            Status status = call.get(5, TimeUnit.SECONDS);
            assertEquals(Status.Code.UNAVAILABLE, status.getCode(), "the waiting SendEvent: " + status);
            assertTrue(String.valueOf(status.getDescription()).contains("shutting down"), status.toString());
            assertTrue(leaving.waitForExit(BUDGET) >= 0, "exited within " + BUDGET);
            long tookMillis = (System.nanoTime() - sigterm) / 1_000_000;

            publisher.join(Duration.ofSeconds(60).toMillis());
            assertEquals(0, devices.missingIn(telemetry, Duration.ofSeconds(60)));
            assertTrue(tookMillis < BUDGET.toMillis(), "exit took " + tookMillis + " ms");
        } finally {
            channel.shutdownNow();
        }
    }

    @Test
    void sigtermWhileKafkaIsDownExitsWithinTheBudgetAndLeavesTheMessagesToTheBroker() throws Exception {
        String run = UUID.randomUUID().toString().substring(0, 6);
        GatewayProcess gateway = pod(run, "gw-" + run + "-a", null);
        String id = Devices.uniqueId("down");
        var device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            for (int i = 0; i < 50; i++) {
                Devices.publish(device, "devices/" + id + "/telemetry", ByteBuffer.allocate(8).putLong(0, i).array(), 1);
            }
            telemetry.await(r -> id.equals(r.key()), 50, Duration.ofSeconds(60));

            servers.kafka.stop(true);
            for (int i = 50; i < 300; i++) {
                Devices.publish(device, "devices/" + id + "/telemetry", ByteBuffer.allocate(8).putLong(0, i).array(), 1);
            }
            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> gateway.metric("gateway_ingest_in_flight") >= 250);
            long sigterm = System.nanoTime();
            sigterm(gateway);
            assertTrue(gateway.waitForExit(BUDGET.plusSeconds(3)) >= 0, "exited within the budget");
            long tookMillis = (System.nanoTime() - sigterm) / 1_000_000;
            assertTrue(tookMillis < BUDGET.toMillis(), "exit took " + tookMillis + " ms");

            // nothing was acknowledged to the broker: its replacement (a new pod name) gets all of it
            servers.kafka.start();
            pod(run, "gw-" + run + "-b", null);
            List<ConsumerRecord<String, byte[]>> records = telemetry.await(r -> id.equals(r.key()), 300,
                    Duration.ofSeconds(90));
            BitSet seen = new BitSet();
            for (ConsumerRecord<String, byte[]> r : records) {
                seen.set((int) ByteBuffer.wrap(DeviceMessage.parseFrom(r.value()).getPayload().toByteArray()).getLong(0));
            }
            assertEquals(300, seen.cardinality());
        } finally {
            device.disconnect();
        }
    }
}
