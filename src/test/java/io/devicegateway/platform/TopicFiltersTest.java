package io.devicegateway.platform;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import io.devicegateway.platform.mqtt.TopicFilters;

class TopicFiltersTest {

    @ParameterizedTest(name = "{0} ~ {1} = {2}")
    @CsvSource({
            "devices/+/telemetry/#, devices/a/telemetry, true",
            "devices/+/telemetry/#, devices/a/telemetry/x/y, true",
            "devices/+/telemetry/#, devices/a/events, false",
            "devices/+/telemetry/#, devices/a/telemetryx, false",
            "devices/+/status, devices/a/status, true",
            "devices/+/status, devices/a/b/status, false",
            "devices/+/status, devices/a/status/x, false",
            "devices/+/status, devices/a, false",
            "#, anything/at/all, true",
            "a/+, a/, true",
            "a/b, a/b/c, false",
            "a/b/c, a/b, false",
            "+/+, a, false",
            "a/#, a, true",
            "a/#, ab, false",
    })
    void matchesLikeAnMqttBroker(String filter, String topic, boolean expected) {
        assertEquals(expected, TopicFilters.matches(filter, topic));
    }
}
