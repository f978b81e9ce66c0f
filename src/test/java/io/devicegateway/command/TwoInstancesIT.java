package io.devicegateway.command;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.ManagedChannel;

/**
 * Two packaged gateway instances behind one broker, sharing the ingest subscription: a response reaches the
 * instance that waits for it, whichever instance sent the command, and is recorded once.
 */
class TwoInstancesIT {

    private static final Duration TIMEOUT = Duration.ofSeconds(60);
    private static LocalServers servers;
    private static GatewayProcess a;
    private static GatewayProcess b;

    @BeforeAll
    static void start() {
        servers = LocalServers.start("two-instances");
        a = instance("dgw-it-a");
        b = instance("dgw-it-b");
        a.awaitReady(TIMEOUT);
        b.awaitReady(TIMEOUT);
    }

    private static GatewayProcess instance(String clientId) {
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        config.put("gateway.mqtt.client-id", clientId);
        config.put("gateway.mqtt.shared-group", "it");
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        return GatewayProcess.start(config, List.of("-Xmx256m"), servers.workDir.resolve(clientId + ".log"));
    }

    @AfterAll
    static void stop() {
        if (a != null) {
            a.close();
        }
        if (b != null) {
            b.close();
        }
        servers.close();
    }

    private static SendEventResponse request(GatewayProcess instance, String deviceId) {
        ManagedChannel channel = Agents.channel(instance.httpPort);
        try {
            return Agents.stub(channel, Agents.OPS_TOKEN).sendEvent(SendEventRequest.newBuilder()
                    .setDeviceId(deviceId).setName("status").setPayload(ByteString.copyFromUtf8("?"))
                    .setAwaitResponse(true).setResponseTimeoutMs(10_000).build());
        } finally {
            channel.shutdownNow();
        }
    }

    private static boolean online(GatewayProcess instance, String deviceId) {
        ManagedChannel channel = Agents.channel(instance.httpPort);
        try {
            return Agents.stub(channel, Agents.OPS_TOKEN)
                    .getSession(GetSessionRequest.newBuilder().setDeviceId(deviceId).build()).getOnline();
        } catch (RuntimeException notYet) {
            return false;
        } finally {
            channel.shutdownNow();
        }
    }

    @Test
    void theWaitingInstanceGetsTheAnswerAndItIsRecordedOnce() {
        String id = Devices.uniqueId("pump");
        try (DeviceAgent device = new DeviceAgent(id, servers.mosquitto.port).answering(200, "pong").connect();
                KafkaRecords results = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.command-results")) {
            Awaitility.await().atMost(TIMEOUT).until(() -> online(a, id) && online(b, id));
            for (GatewayProcess instance : List.of(a, b, a, b)) {
                SendEventResponse response = request(instance, id);
                assertEquals(Outcome.RESPONDED, response.getOutcome());
                assertEquals("pong", response.getResponsePayload().toStringUtf8());
                String corr = response.getCorrelationId();
                results.await(r -> is(r.value(), corr, CommandOutcome.COMMAND_RESPONDED), 1, TIMEOUT);
                Awaitility.await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(5)).until(() -> results
                        .drain(r -> is(r.value(), corr, CommandOutcome.COMMAND_RESPONDED)).size() == 1);
            }
        }
    }

    @Test
    void bothInstancesShareTheIngestLoadAndNothingIsLost() {
        String id = Devices.uniqueId("shared");
        int count = 400;
        double beforeA = a.metric("gateway_ingest_messages_total{kind=\"telemetry\"}");
        double beforeB = b.metric("gateway_ingest_messages_total{kind=\"telemetry\"}");
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            for (int i = 0; i < count; i++) {
                Devices.publish(device, "devices/" + id + "/telemetry", Integer.toString(i).getBytes(), 1);
            }
            assertEquals(count, telemetry.await(r -> id.equals(r.key()), count, TIMEOUT).size());
            double byA = a.metric("gateway_ingest_messages_total{kind=\"telemetry\"}") - beforeA;
            double byB = b.metric("gateway_ingest_messages_total{kind=\"telemetry\"}") - beforeB;
            assertTrue(byA > 0 && byB > 0, "split " + byA + " / " + byB);
            assertEquals(count, byA + byB, 0.0);
        } finally {
            device.disconnect();
        }
    }

    private static boolean is(byte[] value, String correlationId, CommandOutcome outcome) {
        try {
            CommandResult result = CommandResult.parseFrom(value);
            return result.getCorrelationId().equals(correlationId) && result.getOutcome() == outcome;
        } catch (InvalidProtocolBufferException e) {
            return false;
        }
    }
}
