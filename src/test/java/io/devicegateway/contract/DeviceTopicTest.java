package io.devicegateway.contract;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class DeviceTopicTest {

    @Test
    void parsesTelemetryWithAndWithoutStream() {
        DeviceTopic plain = DeviceTopic.parse("devices/truck-7/telemetry").topic();
        assertEquals(new DeviceTopic("truck-7", TopicKind.TELEMETRY, ""), plain);
        DeviceTopic nested = DeviceTopic.parse("devices/truck-7/telemetry/gps/raw").topic();
        assertEquals(new DeviceTopic("truck-7", TopicKind.TELEMETRY, "gps/raw"), nested);
    }

    @Test
    void parsesEventsStatusAndResponses() {
        assertEquals(new DeviceTopic("a.b:c_d-1", TopicKind.EVENTS, "alarm"),
                DeviceTopic.parse("devices/a.b:c_d-1/events/alarm").topic());
        assertEquals(new DeviceTopic("s1", TopicKind.STATUS, ""), DeviceTopic.parse("devices/s1/status").topic());
        assertEquals(new DeviceTopic("s1", TopicKind.RESPONSES, "c-1/404"),
                DeviceTopic.parse("devices/s1/responses/c-1/404").topic());
    }

    @Test
    void rejectsTopicsOutsideTheGrammar() {
        for (String topic : new String[] { "devices", "devices/x", "device/x/telemetry", "devices/x/metrics",
                "/devices/x/telemetry", "devices/x/status/extra", "devices/x/responses" }) {
            assertEquals(RejectReason.TOPIC_NOT_IN_GRAMMAR, DeviceTopic.parse(topic).rejection(), topic);
        }
    }

    @Test
    void rejectsInvalidDeviceIds() {
        for (String topic : new String[] { "devices//telemetry", "devices/bad id/telemetry",
                "devices/é/telemetry", "devices/" + "x".repeat(129) + "/telemetry", "devices/a+b/telemetry",
                "devices/a#/events" }) {
            assertEquals(RejectReason.INVALID_DEVICE_ID, DeviceTopic.parse(topic).rejection(), topic);
        }
        assertTrue(DeviceTopic.parse("devices/" + "x".repeat(128) + "/telemetry").ok());
    }

    @Test
    void rejectsEmptyOrInvalidStreamLevels() {
        for (String topic : new String[] { "devices/x/telemetry/", "devices/x/telemetry//a", "devices/x/events/a b",
                "devices/x/telemetry/" + "s".repeat(257) }) {
            assertEquals(RejectReason.INVALID_STREAM, DeviceTopic.parse(topic).rejection(), topic);
        }
    }

    @Test
    void deviceIdRuleIsTheDocumentedPattern() {
        assertTrue(DeviceIds.isValid("Ab0._:-"));
        assertFalse(DeviceIds.isValid(""));
        assertFalse(DeviceIds.isValid(null));
        assertFalse(DeviceIds.isValid("a/b"));
    }
}
