package io.devicegateway.testing;

/** Reads samples out of a {@code /q/metrics} (Prometheus text format) body. */
public final class PrometheusText {

    private PrometheusText() {
    }

    /** The value of a series by its exact name and labels, e.g. {@code gateway_ingest_in_flight}; NaN if absent. */
    public static double sample(String body, String series) {
        for (String line : body.split("\n")) {
            if (line.startsWith(series + " ")) {
                return Double.parseDouble(line.substring(series.length() + 1).trim());
            }
        }
        return Double.NaN;
    }
}
