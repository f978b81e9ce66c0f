package io.devicegateway.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt5.Mqtt5BlockingClient;
import com.hivemq.client.mqtt.mqtt5.exceptions.Mqtt5ConnAckException;
import com.hivemq.client.mqtt.mqtt5.exceptions.Mqtt5PubAckException;
import com.hivemq.client.mqtt.mqtt5.exceptions.Mqtt5SubAckException;
import com.hivemq.client.mqtt.mqtt5.message.publish.Mqtt5PublishResult;
import com.hivemq.client.mqtt.mqtt5.message.publish.puback.Mqtt5PubAckReasonCode;
import com.hivemq.client.mqtt.mqtt5.message.subscribe.suback.Mqtt5SubAck;
import com.hivemq.client.mqtt.mqtt5.message.subscribe.suback.Mqtt5SubAckReasonCode;

import com.google.protobuf.ByteString;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.MosquittoDynsec;
import io.devicegateway.testing.RedisCommands;
import io.devicegateway.v1.Device;
import io.devicegateway.v1.DeviceRef;
import io.devicegateway.v1.DeviceRegistryGrpc.DeviceRegistryBlockingStub;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.ListDevicesRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.devicegateway.v1.ListDevicesResponse;
import io.devicegateway.v1.RegisterDeviceRequest;
import io.devicegateway.v1.RegisterDeviceResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;

/**
 * The device registry against a real Mosquitto with the dynamic-security plugin, real Redis and Kafka: devices get
 * credentials and rights to their own topics only, on the broker itself; disable, rotate and delete take effect at
 * once; changes made while the broker is down are applied when it returns.
 */
@QuarkusTest
@TestProfile(RegistryDynsecTest.DynsecBroker.class)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class RegistryDynsecTest {

    static final Duration TIMEOUT = Duration.ofSeconds(60);
    static final String HOOK_SECRET = "hook-shared-secret";

    /** Own servers: Mosquitto with dynamic security (anonymous refused), stopped and restarted by one test. */
    public static class DynsecBroker implements QuarkusTestProfile, QuarkusTestResourceLifecycleManager {
        static LocalServers servers;

        @Override
        public List<TestResourceEntry> testResources() {
            return List.of(new TestResourceEntry(DynsecBroker.class));
        }

        @Override
        public Map<String, String> start() {
            servers = LocalServers.startWith("registry", 0, m -> MosquittoDynsec.configure(m, "registry"));
            Map<String, String> config = new HashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.client-id", "dgw-test-registry");
            config.put("gateway.mqtt.username", MosquittoDynsec.GATEWAY_USER);
            config.put("gateway.mqtt.password", MosquittoDynsec.GATEWAY_PASSWORD);
            config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
            config.put("gateway.registry.mosquitto-dynsec.enabled", "true");
            config.put("gateway.registry.mosquitto-dynsec.pending-key",
                    Base64.getEncoder().encodeToString(UUID.randomUUID().toString().substring(0, 32).getBytes()));
            config.put("gateway.registry.auth-hook.secret", HOOK_SECRET);
            return config;
        }

        @Override
        public void stop() {
            servers.close();
        }
    }

    @TestHTTPResource
    URL url;

    static ManagedChannel channel;

    @BeforeAll
    static void open() {
        channel = null;
    }

    @AfterAll
    static void close() {
        if (channel != null) {
            channel.shutdownNow();
        }
    }

    DeviceRegistryBlockingStub ops() {
        return Agents.registry(channel(), Agents.OPS_TOKEN);
    }

    DeviceRegistryBlockingStub fleet() {
        return Agents.registry(channel(), Agents.FLEET_TOKEN);
    }

    ManagedChannel channel() {
        if (channel == null) {
            channel = Agents.channel(url);
        }
        return channel;
    }

    static LocalServers servers() {
        return DynsecBroker.servers;
    }

    static String uniqueId(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    RegisterDeviceResponse register(String id) {
        return ops().registerDevice(RegisterDeviceRequest.newBuilder().setDeviceId(id).build());
    }

    static Mqtt5BlockingClient connect(String username, String password) {
        Mqtt5BlockingClient client = MqttClient.builder().useMqttVersion5()
                .identifier(username + "-" + UUID.randomUUID().toString().substring(0, 6))
                .serverHost("127.0.0.1").serverPort(servers().mosquitto.port)
                .simpleAuth().username(username).password(password.getBytes(StandardCharsets.UTF_8))
                .applySimpleAuth().buildBlocking();
        client.connect();
        return client;
    }

    static void assertRefused(String username, String password) {
        assertThrows(Mqtt5ConnAckException.class, () -> connect(username, password),
                username + " must be refused by the broker");
    }

    static void disconnect(Mqtt5BlockingClient client) {
        if (client.getState().isConnected()) {
            client.disconnect();
        }
    }

    @Test
    @Order(1)
    void aRegisteredDeviceConnectsWithItsCredentialsAndItsTelemetryReachesKafka() {
        String id = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        assertEquals(id, creds.getUsername());
        assertTrue(creds.getPassword().length() >= 32, "a strong random password");
        Mqtt5BlockingClient device = connect(creds.getUsername(), creds.getPassword());
        try (KafkaRecords telemetry = new KafkaRecords(servers().kafka.bootstrapServers(), "iot.telemetry")) {
            Mqtt5PublishResult result = device.publishWith().topic("devices/" + id + "/telemetry/temp")
                    .qos(MqttQos.AT_LEAST_ONCE).payload("21.5".getBytes()).send();
            assertTrue(result.getError().isEmpty(), "own telemetry accepted");
            assertEquals(1, telemetry.await(r -> id.equals(r.key()), 1, TIMEOUT).size());
        } finally {
            disconnect(device);
        }
    }

    @Test
    @Order(1)
    void aRegisteredDeviceReceivesCommandsAndItsAnswerCompletesSendEvent() {
        String id = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        DeviceAgent device = new DeviceAgent(id, servers().mosquitto.port).withCredentials(id, creds.getPassword())
                .answering(200, "done").connect();
        try {
            var commands = Agents.stub(channel(), Agents.OPS_TOKEN);
            Awaitility.await().atMost(TIMEOUT).ignoreExceptions().until(() -> commands.getSession(
                    GetSessionRequest.newBuilder().setDeviceId(id).build()).getOnline());
            SendEventResponse answer = commands.sendEvent(SendEventRequest.newBuilder().setDeviceId(id)
                    .setName("reboot").setPayload(ByteString.copyFromUtf8("{}")).setAwaitResponse(true).build());
            assertEquals(Outcome.RESPONDED, answer.getOutcome());
            assertEquals("done", answer.getResponsePayload().toStringUtf8());
        } finally {
            device.close();
        }
    }

    @Test
    @Order(2)
    void aDeviceCannotPublishToAnotherDevicesTopicsAndNothingReachesKafka() {
        String id = uniqueId("truck");
        String other = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        register(other);
        Mqtt5BlockingClient device = connect(id, creds.getPassword());
        try (KafkaRecords telemetry = new KafkaRecords(servers().kafka.bootstrapServers(), "iot.telemetry")) {
            for (String topic : List.of("devices/" + other + "/telemetry", "devices/" + other + "/events/alarm",
                    "devices/" + other + "/status", "devices/" + id + "/commands/reboot/1", "other/topic")) {
                assertEquals(Mqtt5PubAckReasonCode.NOT_AUTHORIZED, pubAckReason(device, topic), topic);
            }
            // a marker from the device's own topic, written after the refused ones: once it is in Kafka, so would be
            // anything the broker had let through
            device.publishWith().topic("devices/" + id + "/events/marker").qos(MqttQos.AT_LEAST_ONCE)
                    .payload("m".getBytes()).send();
            try (KafkaRecords events = new KafkaRecords(servers().kafka.bootstrapServers(), "iot.events")) {
                events.await(r -> id.equals(r.key()), 1, TIMEOUT);
                assertTrue(events.upToEnd(r -> other.equals(r.key())).isEmpty());
            }
            assertTrue(telemetry.upToEnd(r -> other.equals(r.key())).isEmpty(), "nothing under the other id");
        } finally {
            disconnect(device);
        }
    }

    static Mqtt5PubAckReasonCode pubAckReason(Mqtt5BlockingClient device, String topic) {
        try {
            Mqtt5PublishResult result = device.publishWith().topic(topic).qos(MqttQos.AT_LEAST_ONCE)
                    .payload("x".getBytes()).send();
            return ((Mqtt5PublishResult.Mqtt5Qos1Result) result).getPubAck().getReasonCode();
        } catch (Mqtt5PubAckException e) {
            return e.getMqttMessage().getReasonCode();
        }
    }

    @Test
    @Order(3)
    void aDeviceMaySubscribeOnlyToItsOwnCommands() {
        String id = uniqueId("truck");
        String other = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        Mqtt5BlockingClient device = connect(id, creds.getPassword());
        try {
            Mqtt5SubAck own = device.subscribeWith().topicFilter("devices/" + id + "/commands/#")
                    .qos(MqttQos.AT_LEAST_ONCE).send();
            assertEquals(List.of(Mqtt5SubAckReasonCode.GRANTED_QOS_1), own.getReasonCodes());
            for (String filter : List.of("devices/" + other + "/commands/#", "devices/+/commands/#", "#",
                    "devices/" + id + "/telemetry")) {
                assertEquals(Mqtt5SubAckReasonCode.NOT_AUTHORIZED, subAckReason(device, filter), filter);
            }
        } finally {
            disconnect(device);
        }
    }

    static Mqtt5SubAckReasonCode subAckReason(Mqtt5BlockingClient device, String filter) {
        try {
            return device.subscribeWith().topicFilter(filter).qos(MqttQos.AT_LEAST_ONCE).send().getReasonCodes()
                    .get(0);
        } catch (Mqtt5SubAckException e) {
            return e.getMqttMessage().getReasonCodes().get(0);
        }
    }

    @Test
    @Order(4)
    void aWrongPasswordAnUnknownDeviceAndAnonymousClientsAreRefused() {
        String id = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        assertRefused(id, creds.getPassword() + "x");
        assertRefused(uniqueId("ghost"), creds.getPassword());
        Mqtt5BlockingClient anonymous = MqttClient.builder().useMqttVersion5().serverHost("127.0.0.1")
                .serverPort(servers().mosquitto.port).buildBlocking();
        assertThrows(Mqtt5ConnAckException.class, anonymous::connect);
        disconnect(connect(id, creds.getPassword())); // and the right one still works
    }

    @Test
    @Order(5)
    void aDisabledDeviceIsDisconnectedAtOnceAndCannotConnectUntilEnabled() {
        String id = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        Mqtt5BlockingClient device = connect(id, creds.getPassword());
        Device disabled = ops().disableDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        assertFalse(disabled.getEnabled());
        assertFalse(disabled.getBrokerSyncPending(), "the broker confirmed before the call returned");
        // the broker drops the connection as part of the command the call waited for
        Awaitility.await().atMost(Duration.ofSeconds(5)).until(() -> !device.getState().isConnected());
        assertRefused(id, creds.getPassword());

        assertTrue(ops().enableDevice(DeviceRef.newBuilder().setDeviceId(id).build()).getEnabled());
        disconnect(connect(id, creds.getPassword()));
    }

    @Test
    @Order(6)
    void afterRotateCredentialsTheOldPasswordFailsAndTheNewOneWorks() {
        String id = uniqueId("truck");
        RegisterDeviceResponse first = register(id);
        Device before = ops().getDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        RegisterDeviceResponse second = ops().rotateCredentials(DeviceRef.newBuilder().setDeviceId(id).build());
        assertFalse(first.getPassword().equals(second.getPassword()));
        assertRefused(id, first.getPassword());
        disconnect(connect(id, second.getPassword()));
        Device after = ops().getDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        assertTrue(after.getCredentialsRotatedAtMs() >= before.getCredentialsRotatedAtMs());
        assertTrue(after.getRevision() > before.getRevision());
        assertEquals(before.getCreatedAtMs(), after.getCreatedAtMs());
    }

    @Test
    @Order(7)
    void aDeletedDeviceIsCutOffAndIsGone() {
        String id = uniqueId("truck");
        RegisterDeviceResponse creds = register(id);
        Mqtt5BlockingClient device = connect(id, creds.getPassword());
        ops().deleteDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        Awaitility.await().atMost(Duration.ofSeconds(5)).until(() -> !device.getState().isConnected());
        assertRefused(id, creds.getPassword());
        assertEquals(Status.Code.NOT_FOUND, code(() -> ops().getDevice(DeviceRef.newBuilder().setDeviceId(id)
                .build())));
        // the id may be registered again, with new credentials
        RegisterDeviceResponse again = register(id);
        disconnect(connect(id, again.getPassword()));
    }

    @Test
    @Order(8)
    void onlyASaltedSlowHashOfThePasswordIsStoredAndGetDeviceNeverReturnsIt() {
        String id = uniqueId("truck");
        RegisterDeviceResponse creds = ops().registerDevice(RegisterDeviceRequest.newBuilder().setDeviceId(id)
                .putLabels("site", "north").build());
        try (RedisCommands redis = new RedisCommands(servers().redis.port)) {
            @SuppressWarnings("unchecked")
            List<Object> hash = (List<Object>) redis.call("HGETALL", "dgw:{" + id + "}:device");
            Map<String, String> fields = new HashMap<>();
            for (int i = 0; i < hash.size(); i += 2) {
                fields.put(hash.get(i).toString(), hash.get(i + 1).toString());
            }
            assertTrue(fields.get("secret").startsWith("pbkdf2-sha512$210000$"), fields.get("secret"));
            assertNull(fields.get("pending"), "the sealed password is deleted once the broker confirmed it");
            fields.values().forEach(v -> assertFalse(v.contains(creds.getPassword()), "no password in Redis"));
        }
        Device device = ops().getDevice(DeviceRef.newBuilder().setDeviceId(id).build());
        assertEquals(Map.of("site", "north"), device.getLabelsMap());
        assertTrue(device.getEnabled());
        assertEquals(device.getCreatedAtMs(), device.getCredentialsRotatedAtMs());
        assertFalse(device.toString().contains(creds.getPassword()));
        assertFalse(device.toString().contains("pbkdf2"));
    }

    @Test
    @Order(9)
    void iotRegistryRecordsEveryChangeInOrderAndATombstoneOnDelete() throws Exception {
        String id = uniqueId("truck");
        DeviceRef ref = DeviceRef.newBuilder().setDeviceId(id).build();
        RegisterDeviceResponse creds = ops().registerDevice(RegisterDeviceRequest.newBuilder().setDeviceId(id)
                .putLabels("model", "x1").build());
        ops().disableDevice(ref);
        ops().disableDevice(ref); // already disabled: no record
        ops().enableDevice(ref);
        RegisterDeviceResponse rotated = ops().rotateCredentials(ref);
        ops().deleteDevice(ref);
        try (KafkaRecords registry = new KafkaRecords(servers().kafka.bootstrapServers(), "iot.registry")) {
            List<ConsumerRecord<String, byte[]>> records = registry.await(r -> id.equals(r.key()), 5, TIMEOUT);
            assertEquals(List.of("registered", "disabled", "enabled", "credentials-rotated", "deleted"),
                    records.stream().map(r -> KafkaRecords.header(r, "change")).toList());
            List<Long> revisions = new ArrayList<>();
            for (ConsumerRecord<String, byte[]> r : records.subList(0, 4)) {
                Device d = Device.parseFrom(r.value());
                assertEquals(id, d.getDeviceId());
                assertEquals(Map.of("model", "x1"), d.getLabelsMap());
                revisions.add(d.getRevision());
                String text = new String(r.value(), StandardCharsets.ISO_8859_1);
                assertFalse(text.contains(creds.getPassword()) || text.contains(rotated.getPassword())
                        || text.contains("pbkdf2"), "no secret in iot.registry");
            }
            assertEquals(List.of(1L, 2L, 3L, 4L), revisions);
            assertFalse(Device.parseFrom(records.get(1).value()).getEnabled());
            assertNull(records.get(4).value(), "a tombstone on delete");
        }
    }

    @Test
    @Order(10)
    void everyRegistryRpcAnswersItsErrorCodes() {
        String id = uniqueId("truck");
        register(id);
        DeviceRef unknown = DeviceRef.newBuilder().setDeviceId(uniqueId("truck")).build();
        DeviceRef bad = DeviceRef.newBuilder().setDeviceId("bad id").build();
        DeviceRef outOfScope = DeviceRef.newBuilder().setDeviceId(uniqueId("sign")).build();

        // INVALID_ARGUMENT: id outside the grammar on every RPC, bad labels, bad paging
        for (RegisterDeviceRequest r : List.of(RegisterDeviceRequest.newBuilder().setDeviceId("bad id").build(),
                RegisterDeviceRequest.newBuilder().setDeviceId("").build(),
                RegisterDeviceRequest.newBuilder().setDeviceId("a/b").build(),
                RegisterDeviceRequest.newBuilder().setDeviceId("x".repeat(129)).build(),
                RegisterDeviceRequest.newBuilder().setDeviceId(uniqueId("truck")).putLabels("bad key", "v").build(),
                RegisterDeviceRequest.newBuilder().setDeviceId(uniqueId("truck")).putLabels("k", "v".repeat(257))
                        .build(),
                RegisterDeviceRequest.newBuilder().setDeviceId(uniqueId("truck")).putLabels("k", "line\nbreak")
                        .build(),
                RegisterDeviceRequest.newBuilder().setDeviceId(MosquittoDynsec.GATEWAY_USER).build())) {
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().registerDevice(r)), r.toString());
        }
        Map<String, String> tooMany = new HashMap<>();
        for (int i = 0; i < 33; i++) {
            tooMany.put("k" + i, "v");
        }
        StatusRuntimeException labels = assertThrows(StatusRuntimeException.class, () -> ops().registerDevice(
                RegisterDeviceRequest.newBuilder().setDeviceId(uniqueId("truck")).putAllLabels(tooMany).build()));
        assertEquals(Status.Code.INVALID_ARGUMENT, labels.getStatus().getCode());
        assertTrue(labels.getStatus().getDescription().contains("at most 32 labels"));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().rotateCredentials(bad)));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().disableDevice(bad)));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().enableDevice(bad)));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().deleteDevice(bad)));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().getDevice(bad)));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().listDevices(ListDevicesRequest.newBuilder()
                .setPageSize(-1).build())));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().listDevices(ListDevicesRequest.newBuilder()
                .setPageToken("not-a-token").build())));
        assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> ops().listDevices(ListDevicesRequest.newBuilder()
                .putLabelSelector("bad key", "v").build())));

        // ALREADY_EXISTS
        StatusRuntimeException exists = assertThrows(StatusRuntimeException.class, () -> register(id));
        assertEquals(Status.Code.ALREADY_EXISTS, exists.getStatus().getCode());

        // NOT_FOUND
        assertEquals(Status.Code.NOT_FOUND, code(() -> ops().rotateCredentials(unknown)));
        assertEquals(Status.Code.NOT_FOUND, code(() -> ops().disableDevice(unknown)));
        assertEquals(Status.Code.NOT_FOUND, code(() -> ops().enableDevice(unknown)));
        assertEquals(Status.Code.NOT_FOUND, code(() -> ops().deleteDevice(unknown)));
        assertEquals(Status.Code.NOT_FOUND, code(() -> ops().getDevice(unknown)));

        // PERMISSION_DENIED: the fleet token covers truck-* only, whether or not the device exists
        register(outOfScope.getDeviceId());
        assertEquals(Status.Code.PERMISSION_DENIED, code(() -> fleet().registerDevice(RegisterDeviceRequest
                .newBuilder().setDeviceId(uniqueId("sign")).build())));
        assertEquals(Status.Code.PERMISSION_DENIED, code(() -> fleet().rotateCredentials(outOfScope)));
        assertEquals(Status.Code.PERMISSION_DENIED, code(() -> fleet().disableDevice(outOfScope)));
        assertEquals(Status.Code.PERMISSION_DENIED, code(() -> fleet().enableDevice(outOfScope)));
        assertEquals(Status.Code.PERMISSION_DENIED, code(() -> fleet().deleteDevice(outOfScope)));
        assertEquals(Status.Code.PERMISSION_DENIED, code(() -> fleet().getDevice(outOfScope)));
        assertTrue(ops().getDevice(outOfScope).getEnabled(), "untouched by the refused calls");
        assertEquals(id, fleet().getDevice(DeviceRef.newBuilder().setDeviceId(id).build()).getDeviceId());

        // UNAUTHENTICATED: no token, unknown token
        for (DeviceRegistryBlockingStub stub : List.of(Agents.registry(channel(), null),
                Agents.registry(channel(), "wrong-token"))) {
            assertEquals(Status.Code.UNAUTHENTICATED, code(() -> stub.registerDevice(RegisterDeviceRequest
                    .newBuilder().setDeviceId(uniqueId("truck")).build())));
            assertEquals(Status.Code.UNAUTHENTICATED, code(() -> stub.getDevice(DeviceRef.newBuilder()
                    .setDeviceId(id).build())));
            assertEquals(Status.Code.UNAUTHENTICATED, code(() -> stub.listDevices(ListDevicesRequest
                    .getDefaultInstance())));
            assertEquals(Status.Code.UNAUTHENTICATED, code(() -> stub.deleteDevice(DeviceRef.newBuilder()
                    .setDeviceId(id).build())));
        }
        assertTrue(ops().getDevice(DeviceRef.newBuilder().setDeviceId(id).build()).getEnabled());
    }

    @Test
    @Order(11)
    void listDevicesPagesInIdOrderShowsOnlyTheAgentsScopeAndFiltersByLabels() {
        String run = UUID.randomUUID().toString().substring(0, 8);
        List<String> trucks = List.of("truck-" + run + "-1", "truck-" + run + "-2", "truck-" + run + "-3");
        List<String> signs = List.of("sign-" + run + "-1", "sign-" + run + "-2");
        for (String id : concat(trucks, signs)) {
            ops().registerDevice(RegisterDeviceRequest.newBuilder().setDeviceId(id).putLabels("run", run)
                    .putLabels("kind", id.startsWith("truck") ? "truck" : "sign").build());
        }
        ListDevicesRequest.Builder ofRun = ListDevicesRequest.newBuilder().putLabelSelector("run", run);

        List<String> all = new ArrayList<>();
        List<Integer> pageSizes = new ArrayList<>();
        String token = "";
        do {
            ListDevicesResponse page = ops().listDevices(ofRun.setPageSize(2).setPageToken(token).build());
            page.getDevicesList().forEach(d -> all.add(d.getDeviceId()));
            pageSizes.add(page.getDevicesCount());
            token = page.getNextPageToken();
        } while (!token.isEmpty());
        assertEquals(concat(signs, trucks), all, "every device once, in id order");
        assertEquals(5, pageSizes.stream().mapToInt(Integer::intValue).sum());
        assertTrue(pageSizes.stream().allMatch(n -> n <= 2));

        List<String> fleetSees = fleet().listDevices(ofRun.setPageSize(100).setPageToken("").build())
                .getDevicesList().stream().map(Device::getDeviceId).toList();
        assertEquals(trucks, fleetSees, "a scoped agent lists only its scope");
        assertEquals(signs, ops().listDevices(ofRun.setPageSize(100).setPageToken("").putLabelSelector("kind", "sign")
                .build()).getDevicesList().stream().map(Device::getDeviceId).toList());
        assertEquals(0, ops().listDevices(ListDevicesRequest.newBuilder().putLabelSelector("run", "no-such-run")
                .build()).getDevicesCount());
    }

    /** Last: it stops and restarts the broker. */
    @Test
    @Order(100)
    void changesMadeWhileTheBrokerIsDownAreAppliedWhenItReturns() {
        String toDisable = uniqueId("truck");
        String toRotate = uniqueId("truck");
        String toDelete = uniqueId("truck");
        String disabledPassword = register(toDisable).getPassword();
        String oldPassword = register(toRotate).getPassword();
        String deletedPassword = register(toDelete).getPassword();
        String newcomer = uniqueId("truck");

        servers().mosquitto.stop();
        String newcomerPassword = register(newcomer).getPassword();
        assertTrue(ops().getDevice(DeviceRef.newBuilder().setDeviceId(newcomer).build()).getBrokerSyncPending(),
                "its password waits, sealed, for the broker");
        ops().disableDevice(DeviceRef.newBuilder().setDeviceId(toDisable).build());
        String newPassword = ops().rotateCredentials(DeviceRef.newBuilder().setDeviceId(toRotate).build())
                .getPassword();
        ops().deleteDevice(DeviceRef.newBuilder().setDeviceId(toDelete).build());
        servers().mosquitto.start();

        Awaitility.await().atMost(TIMEOUT).ignoreExceptions()
                .until(() -> {
                    disconnect(connect(newcomer, newcomerPassword));
                    return true;
                });
        Awaitility.await().atMost(TIMEOUT).until(() -> !ops().getDevice(DeviceRef.newBuilder()
                .setDeviceId(newcomer).build()).getBrokerSyncPending());
        Awaitility.await().atMost(TIMEOUT).ignoreExceptions()
                .until(() -> {
                    disconnect(connect(toRotate, newPassword));
                    return true;
                });
        Awaitility.await().atMost(TIMEOUT).ignoreExceptions().until(() -> refused(toDisable, disabledPassword)
                && refused(toRotate, oldPassword) && refused(toDelete, deletedPassword));
    }

    static boolean refused(String username, String password) {
        try {
            disconnect(connect(username, password));
            return false;
        } catch (Mqtt5ConnAckException e) {
            return true;
        }
    }

    static List<String> concat(List<String> a, List<String> b) {
        List<String> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    static Status.Code code(Runnable call) {
        return assertThrows(StatusRuntimeException.class, call::run).getStatus().getCode();
    }
}
