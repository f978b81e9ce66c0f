package io.devicegateway.platform;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

import io.devicegateway.platform.mqtt.TopicFilters;

class TopicFiltersTest {

    @Test
    void multiLevelWildcardMatchesParentAndChildren() {
        assertTrue(TopicFilters.matches("devices/+/telemetry/#", "devices/a/telemetry"));
        assertTrue(TopicFilters.matches("devices/+/telemetry/#", "devices/a/telemetry/x/y"));
        assertFalse(TopicFilters.matches("devices/+/telemetry/#", "devices/a/events"));
    }

    @Test
    void singleLevelWildcardMatchesExactlyOneLevel() {
        assertTrue(TopicFilters.matches("devices/+/status", "devices/a/status"));
        assertFalse(TopicFilters.matches("devices/+/status", "devices/a/b/status"));
        assertFalse(TopicFilters.matches("devices/+/status", "devices/a/status/x"));
    }
}
