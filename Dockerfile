# regionshift image: one image, many roles. The role is the command, e.g.
#   docker run regionshift worker --region us-west-2
#   docker run regionshift worker --control-only
#   docker run regionshift slack
#   docker run regionshift intake
# docker-compose.yml runs each role as its own service from this file.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript to dist/ ---------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# Dependencies first, so the layer is reused while only sources change.
# --ignore-scripts: package.json's "prepare" runs `npm run build`, which cannot work before
# the sources are copied in; the build runs explicitly below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# Everything .dockerignore lets through (no node_modules, dist, .git, .env, local state).
COPY . .
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: compiled code + production dependencies only --------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app

# Owned by root and read-only to the process: the app never rewrites its own code.
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/runbooks ./runbooks

# ssh-keygen: the control workers verify approvers' SSH signatures with it (docs/approvals.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/*

# The intake's alarm journal lives here (a volume in docker-compose.yml takes this ownership).
RUN mkdir -p /var/lib/regionshift && chown node:node /var/lib/regionshift

# The official node images ship an unprivileged `node` user (uid 1000).
USER node

ENTRYPOINT ["node", "bin/regionshift.js"]
CMD ["--help"]
