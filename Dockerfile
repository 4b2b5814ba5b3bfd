# The ledger's image: build with the dev tools, run with production dependencies only.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 (the embedded store) compiles when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    LEDGER_DATA_DIR=/var/lib/ledger
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /var/lib/ledger && chown node:node /var/lib/ledger
USER node
EXPOSE 3000 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The flags of `npm start` (README, Speed): the heap cap (V8 would otherwise let garbage grow
# with the machine's memory), one V8 helper thread (sized for two cores) that collects
# garbage beside the service's threads, fewer full collections, and no pretenuring by
# allocation site (a charge's short-lived objects were made in the old generation).
CMD ["node", "--max-old-space-size=256", "--v8-pool-size=1", "--heap-growing-percent=100", "--no-allocation-site-pretenuring", "dist/src/main.js"]
