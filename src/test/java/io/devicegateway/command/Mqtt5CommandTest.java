package io.devicegateway.command;

import static io.devicegateway.testing.Agents.OPS_TOKEN;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URL;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;
import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt5.Mqtt5AsyncClient;
import com.hivemq.client.mqtt.mqtt5.message.publish.Mqtt5Publish;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;

/** Commands to MQTT 5 devices: Response Topic, Correlation Data, Message Expiry; the MQTT 5 reply completes SendEvent. */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class Mqtt5CommandTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    @TestHTTPResource
    URL url;

    /** An MQTT 5 device that answers each command on its Response Topic with its Correlation Data. */
    private static final class Mqtt5Device implements AutoCloseable {
        final String id = Devices.uniqueId("v5dev");
        final List<Mqtt5Publish> commands = new CopyOnWriteArrayList<>();
        final Mqtt5AsyncClient client;
        volatile String forgedCorrelation;
        /** False: commands are only collected; the test answers with {@link #reply}. */
        volatile boolean answering = true;

        Mqtt5Device(int port) {
            client = MqttClient.builder().useMqttVersion5().identifier("v5dev-" + UUID.randomUUID())
                    .serverHost("127.0.0.1").serverPort(port).buildAsync();
            client.connect().join();
            client.subscribeWith().topicFilter("devices/" + id + "/commands/#").qos(MqttQos.AT_LEAST_ONCE)
                    .callback(this::onCommand).send().join();
            client.publishWith().topic("devices/" + id + "/status").payload("online".getBytes()).retain(true)
                    .qos(MqttQos.AT_LEAST_ONCE).send().join();
        }

        private void onCommand(Mqtt5Publish command) {
            commands.add(command);
            if (command.getResponseTopic().isEmpty() || !answering) {
                return;
            }
            ByteBuffer correlation = forgedCorrelation != null
                    ? ByteBuffer.wrap(forgedCorrelation.getBytes(StandardCharsets.UTF_8))
                    : command.getCorrelationData().orElseThrow();
            client.publishWith().topic(command.getResponseTopic().get()).correlationData(correlation)
                    .userProperties().add("status", "202").applyUserProperties()
                    .payload("done".getBytes(StandardCharsets.UTF_8)).qos(MqttQos.AT_LEAST_ONCE).send();
        }

        /** Publishes {@code body} on {@code topic} with {@code correlation} as its Correlation Data. */
        void reply(String topic, String correlation, String body) {
            client.publishWith().topic(topic).correlationData(correlation.getBytes(StandardCharsets.UTF_8))
                    .payload(body.getBytes(StandardCharsets.UTF_8)).qos(MqttQos.AT_LEAST_ONCE).send().join();
        }

        @Override
        public void close() {
            client.disconnect().join();
        }
    }

    private SendEventResponse send(SendEventRequest request) {
        ManagedChannel channel = Agents.channel(url);
        try {
            return Agents.stub(channel, OPS_TOKEN).sendEvent(request);
        } finally {
            channel.shutdownNow();
        }
    }

    private void awaitOnline(String id) {
        Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class).until(() -> {
            ManagedChannel channel = Agents.channel(url);
            try {
                return Agents.stub(channel, OPS_TOKEN).getSession(GetSessionRequest.newBuilder().setDeviceId(id)
                        .build()).getOnline();
            } finally {
                channel.shutdownNow();
            }
        });
    }

    @Test
    void anMqtt5ReplyOnTheResponseTopicCompletesSendEvent() {
        try (Mqtt5Device device = new Mqtt5Device(SharedServers.get().mosquitto.port)) {
            awaitOnline(device.id);
            SendEventResponse response = send(SendEventRequest.newBuilder().setDeviceId(device.id).setName("open")
                    .setPayload(ByteString.copyFromUtf8("{}")).setContentType("application/json")
                    .setAwaitResponse(true).setResponseTimeoutMs(10_000).build());
            assertEquals(Outcome.RESPONDED, response.getOutcome());
            assertEquals(202, response.getResponseStatus(), "status from the reply's user property");
            assertEquals("done", response.getResponsePayload().toStringUtf8());
            Mqtt5Publish command = device.commands.get(0);
            assertEquals("devices/" + device.id + "/responses/" + response.getCorrelationId(),
                    command.getResponseTopic().orElseThrow().toString());
            assertEquals(response.getCorrelationId(),
                    StandardCharsets.UTF_8.decode(command.getCorrelationData().orElseThrow()).toString());
            assertEquals("application/json", command.getContentType().orElseThrow().toString());
        }
    }

    @Test
    void aCommandsTtlBecomesItsMessageExpiryInterval() {
        try (Mqtt5Device device = new Mqtt5Device(SharedServers.get().mosquitto.port)) {
            awaitOnline(device.id);
            send(SendEventRequest.newBuilder().setDeviceId(device.id).setName("reboot").setTtlSeconds(60).build());
            Awaitility.await().atMost(TIMEOUT).until(() -> !device.commands.isEmpty());
            long expiry = device.commands.get(0).getMessageExpiryInterval().orElseThrow();
            assertTrue(expiry > 0 && expiry <= 60, "expiry " + expiry);
        }
    }

    @Test
    void aReplyWhoseCorrelationDataDisagreesWithItsTopicIsDeadLetteredAndDoesNotComplete() {
        LocalServers servers = SharedServers.get();
        try (Mqtt5Device device = new Mqtt5Device(servers.mosquitto.port);
                KafkaRecords dlq = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq")) {
            device.forgedCorrelation = "someone-else";
            awaitOnline(device.id);
            StatusRuntimeException error = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
                    () -> send(SendEventRequest.newBuilder().setDeviceId(device.id).setName("open")
                            .setAwaitResponse(true).setResponseTimeoutMs(1_500).build()));
            assertEquals(io.grpc.Status.Code.DEADLINE_EXCEEDED, error.getStatus().getCode());
            var rejected = dlq.await(r -> device.id.equals(r.key()), 1, TIMEOUT).get(0);
            assertEquals("invalid-response", KafkaRecords.header(rejected, "reason"));
        }
    }

    @Test
    void anMqtt5ReplyFromAnotherDeviceIsDeadLetteredAndTheCallKeepsWaiting() throws Exception {
        LocalServers servers = SharedServers.get();
        try (Mqtt5Device asked = new Mqtt5Device(servers.mosquitto.port);
                Mqtt5Device other = new Mqtt5Device(servers.mosquitto.port);
                KafkaRecords dlq = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq")) {
            asked.answering = false;
            awaitOnline(asked.id);
            java.util.concurrent.CompletableFuture<SendEventResponse> call = java.util.concurrent.CompletableFuture
                    .supplyAsync(() -> send(SendEventRequest.newBuilder().setDeviceId(asked.id).setName("open")
                            .setAwaitResponse(true).setResponseTimeoutMs(20_000).build()));
            Awaitility.await().atMost(TIMEOUT).until(() -> !asked.commands.isEmpty());
            Mqtt5Publish command = asked.commands.get(0);
            String corr = StandardCharsets.UTF_8.decode(command.getCorrelationData().orElseThrow()).toString();

            // the other device answers with the right correlation data, on its own response topic
            other.reply("devices/" + other.id + "/responses/" + corr, corr, "forged");
            var rejected = dlq.await(r -> other.id.equals(r.key()), 1, TIMEOUT).get(0);
            assertEquals("response-device-mismatch", KafkaRecords.header(rejected, "reason"));

            asked.reply(command.getResponseTopic().orElseThrow().toString(), corr, "genuine");
            SendEventResponse response = call.get(30, java.util.concurrent.TimeUnit.SECONDS);
            assertEquals(Outcome.RESPONDED, response.getOutcome());
            assertEquals("genuine", response.getResponsePayload().toStringUtf8());
        }
    }
}
