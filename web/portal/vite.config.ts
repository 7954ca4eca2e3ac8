import { defineConfig } from "vite";

// The portal is served by devstack/cmd/portal under a strict Content-Security-Policy (no inline
// script or style), so nothing may be inlined into index.html; assets get hashed names and are
// cached for good.
export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
  },
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
});
