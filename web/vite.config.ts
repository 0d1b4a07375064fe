import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The console is served by the control API at `/`; `npm run dev` proxies the API and the OAuth
// pages to a running control API (CONSOLE_DEV_API, default http://127.0.0.1:8080).
const api = process.env.CONSOLE_DEV_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    // No inline scripts or data: URLs in the output: the console's CSP forbids them.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: {
      "/api": api,
      "/authorize": api,
      "/.well-known": api,
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
