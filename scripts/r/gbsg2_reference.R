# Reference values for her2dlr.survival, computed with R's `survival` package on GBSG2.
#
# Usage (from the repository root; needs only base R + r-cran-survival, e.g. Debian's
# `apt-get install r-base-core r-cran-survival`):
#
#     Rscript scripts/r/gbsg2_reference.R [tests/fixtures/survival]
#
# Input: tests/fixtures/survival/gbsg2.csv, exported from `lifelines.datasets.load_gbsg2()`
# (686 patients; time in days, cens = 1 for recurrence/death). Output: the CSV files named
# r_*.csv in the same folder. The Python tests compare against them; R is NOT needed at test time.
#
# Conventions chosen to match lifelines:
#  * factor levels are alphabetical (R's default for read.csv(stringsAsFactors = TRUE)):
#    horTh: no < yes, menostat: Post < Pre, tgrade: I < II < III; the first level is the reference;
#  * ties: Efron (coxph's default and lifelines' only method);
#  * Kaplan-Meier confidence intervals: conf.type = "log-log" (lifelines' "exponential Greenwood").

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[1] else "tests/fixtures/survival"

suppressPackageStartupMessages(library(survival))

gbsg2 <- read.csv(file.path(out_dir, "gbsg2.csv"), stringsAsFactors = TRUE)
gbsg2$tgrade <- factor(gbsg2$tgrade, levels = c("I", "II", "III"))

fmt <- function(x) trimws(formatC(x, digits = 15, format = "g"))
write_ref <- function(df, name) {
  for (col in names(df)) if (is.numeric(df[[col]])) df[[col]] <- fmt(df[[col]])
  write.csv(df, file.path(out_dir, name), row.names = FALSE, quote = TRUE)
}

versions <- data.frame(
  item = c("R", "survival"),
  version = c(paste(R.version$major, R.version$minor, sep = "."),
              as.character(packageVersion("survival")))
)
write_ref(versions, "r_versions.csv")

# ---- log-rank tests ---------------------------------------------------------------------------
# survdiff(Surv(time, cens) ~ horTh, data = gbsg2)  etc.
logrank_row <- function(name, formula, weights = NULL) {
  sd <- survdiff(formula, data = gbsg2)
  k <- length(sd$n)
  chisq <- sd$chisq
  df <- k - 1
  if (!is.null(weights)) {
    # Test for trend: (w' (O - E))^2 / (w' V w) on 1 df, from survdiff's own O, E and V.
    u <- sum(weights * (sd$obs - sd$exp))
    v <- as.numeric(t(weights) %*% sd$var %*% weights)
    chisq <- u^2 / v
    df <- 1
  }
  data.frame(test = name, chisq = chisq, df = df,
             p = pchisq(chisq, df = df, lower.tail = FALSE))
}
logrank <- rbind(
  logrank_row("horTh", Surv(time, cens) ~ horTh),
  logrank_row("menostat", Surv(time, cens) ~ menostat),
  logrank_row("tgrade", Surv(time, cens) ~ tgrade),
  logrank_row("tgrade_trend", Surv(time, cens) ~ tgrade, weights = c(1, 2, 3))
)
write_ref(logrank, "r_logrank.csv")

# ---- Kaplan-Meier -----------------------------------------------------------------------------
# survfit(Surv(time, cens) ~ horTh, data = gbsg2, conf.type = "log-log")
km <- survfit(Surv(time, cens) ~ horTh, data = gbsg2, conf.type = "log-log")
tab <- summary(km)$table
med <- data.frame(group = sub("horTh=", "", rownames(tab)), n = tab[, "records"],
                  events = tab[, "events"], median = tab[, "median"],
                  median_lower = tab[, "0.95LCL"], median_upper = tab[, "0.95UCL"])
write_ref(med, "r_km_median_horth.csv")

horizons <- c(1, 2, 5) * 365.25
s <- summary(km, times = horizons, extend = TRUE)
surv <- data.frame(group = sub("horTh=", "", as.character(s$strata)), horizon_years = s$time / 365.25,
                   time = s$time, n_risk = s$n.risk, survival = s$surv,
                   lower = s$lower, upper = s$upper)
write_ref(surv, "r_km_survival_horth.csv")

# ---- Cox proportional hazards -----------------------------------------------------------------
full_formula <- Surv(time, cens) ~ horTh + age + menostat + tsize + tgrade + pnodes + progrec + estrec
fit <- coxph(full_formula, data = gbsg2, ties = "efron")
co <- summary(fit)$coefficients
ci <- summary(fit)$conf.int
cox <- data.frame(term = rownames(co), coef = co[, "coef"], se = co[, "se(coef)"],
                  hr = co[, "exp(coef)"], hr_lower = ci[, "lower .95"], hr_upper = ci[, "upper .95"],
                  z = co[, "z"], p = co[, "Pr(>|z|)"])
write_ref(cox, "r_coxph_full.csv")

uno <- concordance(fit, timewt = "n/G2")
cfit <- data.frame(
  statistic = c("n", "n_events", "loglik_null", "loglik", "aic", "concordance_harrell",
                "concordance_harrell_se", "concordance_uno", "lr_test"),
  value = c(fit$n, fit$nevent, fit$loglik[1], fit$loglik[2], AIC(fit),
            fit$concordance[["concordance"]], fit$concordance[["std"]],
            uno$concordance, 2 * (fit$loglik[2] - fit$loglik[1]))
)
write_ref(cfit, "r_coxph_fit.csv")

# ---- stratified Cox: horTh with baseline hazards stratified by tumour grade --------------------
# coxph(Surv(time, cens) ~ horTh + strata(tgrade), data = gbsg2)
sfit <- coxph(Surv(time, cens) ~ horTh + strata(tgrade), data = gbsg2)
sco <- summary(sfit)$coefficients
sci <- summary(sfit)$conf.int
strat <- data.frame(term = rownames(sco), coef = sco[, "coef"], se = sco[, "se(coef)"],
                    hr = sco[, "exp(coef)"], hr_lower = sci[, "lower .95"],
                    hr_upper = sci[, "upper .95"], p = sco[, "Pr(>|z|)"])
write_ref(strat, "r_coxph_strata.csv")

# ---- AIC stepwise selection (MASS-free: stats::step on coxph) ---------------------------------
# step(fit, direction = "backward"); step(null, scope = full, direction = "forward"/"both")
terms_of <- function(m) {
  labs <- attr(terms(m), "term.labels")
  if (length(labs) == 0) "" else paste(sort(labs), collapse = " ")
}
null_fit <- coxph(Surv(time, cens) ~ 1, data = gbsg2)
scope <- list(lower = ~1, upper = ~ horTh + age + menostat + tsize + tgrade + pnodes + progrec + estrec)
back <- step(fit, direction = "backward", trace = 0)
fwd <- step(null_fit, scope = scope, direction = "forward", trace = 0)
both <- step(null_fit, scope = scope, direction = "both", trace = 0)
stepwise <- data.frame(
  direction = c("backward", "forward", "both"),
  terms = c(terms_of(back), terms_of(fwd), terms_of(both)),
  aic = c(extractAIC(back)[2], extractAIC(fwd)[2], extractAIC(both)[2])
)
write_ref(stepwise, "r_stepwise.csv")
write_ref(data.frame(model = "null", loglik = null_fit$loglik[1],
                     aic = -2 * null_fit$loglik[1]), "r_coxph_null.csv")

cat("wrote reference CSVs to", out_dir, "\n")
