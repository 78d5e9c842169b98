# Reference values for her2dlr.evaluate, computed with R (pROC, rms and base stats).
#
# Usage (from the repository root; needs base R + pROC + rms, e.g. Debian's
# `apt-get install r-base-core r-cran-proc r-cran-rms`):
#
#     .venv/bin/python tests/fixtures/evaluate/make_inputs.py   # the input CSVs (already committed)
#     Rscript scripts/r/evaluate_reference.R [tests/fixtures/evaluate]
#
# Inputs: predictions_a.csv, predictions_b.csv, predictions_small.csv, clinical.csv in the
# folder. Outputs: the r_*.csv files in the same folder. The Python tests
# (tests/test_evaluate_reference.py) compare against them; R is NOT needed at test time.
#
# Conventions:
#  * pROC: roc(y, p, direction = "<", levels = c(0, 1)) - higher score = event, no flipping;
#  * Hosmer-Lemeshow: ResourceSelection is not packaged in Debian, so the test is computed here
#    by the textbook formula with ResourceSelection::hoslem.test's grouping:
#    breaks = unique(quantile(p, seq(0, 1, 1/g))) (type 7), cut(p, breaks, include.lowest = TRUE);
#    empty groups are left out and df = (number of groups formed) - 2;
#  * rms::val.prob: "Slope" and "Intercept" are the coefficients of glm(y ~ qlogis(p));
#    calibration-in-the-large is glm(y ~ offset(qlogis(p))) (written as intercept_citl).

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[1] else "tests/fixtures/evaluate"

suppressPackageStartupMessages({
  library(pROC)
  library(rms)
})

fmt <- function(x) trimws(formatC(x, digits = 15, format = "g"))
write_ref <- function(df, name) {
  for (col in names(df)) if (is.numeric(df[[col]])) df[[col]] <- fmt(df[[col]])
  write.csv(df, file.path(out_dir, name), row.names = FALSE, quote = TRUE)
}
read_in <- function(name) read.csv(file.path(out_dir, name), stringsAsFactors = FALSE)
# glm's default convergence (deviance change < 1e-8) stops a little short of the maximum; a tight
# criterion makes the reference the maximum-likelihood estimate itself.
tight <- glm.control(epsilon = 1e-14, maxit = 100)

pred <- list(a = read_in("predictions_a.csv"), b = read_in("predictions_b.csv"),
             small = read_in("predictions_small.csv"))
clin <- read_in("clinical.csv")

versions <- data.frame(
  item = c("R", "pROC", "rms"),
  version = c(paste(R.version$major, R.version$minor, sep = "."),
              as.character(packageVersion("pROC")), as.character(packageVersion("rms")))
)
write_ref(versions, "r_versions.csv")

roc_of <- function(d, col) roc(d$y, d[[col]], direction = "<", levels = c(0, 1), quiet = TRUE)

# ---- AUC with DeLong variance and CI ------------------------------------------------------------
# r <- roc(y, p, direction = "<", levels = c(0, 1)); var(r); ci.auc(r, method = "delong")
cases <- data.frame(dataset = c("a", "a", "a", "a", "b", "small"),
                    predictor = c("p_model", "p_clin", "p_overfit", "p_tied", "p_model", "p_model"))
auc_rows <- do.call(rbind, lapply(seq_len(nrow(cases)), function(i) {
  r <- roc_of(pred[[cases$dataset[i]]], cases$predictor[i])
  ci <- ci.auc(r, method = "delong")
  data.frame(dataset = cases$dataset[i], predictor = cases$predictor[i], auc = as.numeric(auc(r)),
             var = var(r, method = "delong"), ci_low = ci[1], ci_high = ci[3])
}))
write_ref(auc_rows, "r_auc_delong.csv")

# ---- paired DeLong tests ------------------------------------------------------------------------
# roc.test(roc(y, p1), roc(y, p2), method = "delong", paired = TRUE)
pairs <- data.frame(a = c("p_model", "p_model", "p_clin"), b = c("p_clin", "p_tied", "p_tied"))
paired <- do.call(rbind, lapply(seq_len(nrow(pairs)), function(i) {
  t <- roc.test(roc_of(pred$a, pairs$a[i]), roc_of(pred$a, pairs$b[i]), method = "delong", paired = TRUE)
  data.frame(dataset = "a", a = pairs$a[i], b = pairs$b[i], auc_a = unname(t$estimate[1]),
             auc_b = unname(t$estimate[2]), z = unname(t$statistic), p = t$p.value)
}))
write_ref(paired, "r_roc_test_paired.csv")

# ---- unpaired DeLong tests (two independent cohorts) ----------------------------------------------
# roc.test(roc(y1, p1), roc(y2, p2), method = "delong", paired = FALSE)
upairs <- data.frame(d1 = c("a", "a", "small"), p1 = c("p_model", "p_clin", "p_model"),
                     d2 = c("b", "b", "b"), p2 = c("p_model", "p_model", "p_model"))
unpaired <- do.call(rbind, lapply(seq_len(nrow(upairs)), function(i) {
  t <- roc.test(roc_of(pred[[upairs$d1[i]]], upairs$p1[i]), roc_of(pred[[upairs$d2[i]]], upairs$p2[i]),
                method = "delong", paired = FALSE)
  data.frame(d1 = upairs$d1[i], p1 = upairs$p1[i], d2 = upairs$d2[i], p2 = upairs$p2[i],
             auc_1 = unname(t$estimate[1]), auc_2 = unname(t$estimate[2]), z = unname(t$statistic),
             p = t$p.value)
}))
write_ref(unpaired, "r_roc_test_unpaired.csv")

# ---- Hosmer-Lemeshow (hoslem.test grouping, textbook statistic) ------------------------------------
hl <- function(y, p, g) {
  qq <- unique(quantile(p, probs = seq(0, 1, 1 / g)))
  cutp <- cut(p, breaks = qq, include.lowest = TRUE)
  obs <- xtabs(cbind(y0 = 1 - y, y1 = y) ~ cutp)
  expct <- xtabs(cbind(e0 = 1 - p, e1 = p) ~ cutp)
  keep <- rowSums(obs) > 0
  chisq <- sum((obs[keep, , drop = FALSE] - expct[keep, , drop = FALSE])^2 / expct[keep, , drop = FALSE])
  df <- sum(keep) - 2
  list(summary = data.frame(statistic = chisq, df = df, p = pchisq(chisq, df, lower.tail = FALSE)),
       groups = data.frame(group = seq_len(sum(keep)), n = rowSums(obs)[keep], observed = obs[keep, 2],
                           expected = expct[keep, 2]))
}
hl_cases <- data.frame(dataset = c("a", "a", "a", "a", "b", "small", "a"),
                       predictor = c("p_model", "p_clin", "p_overfit", "p_tied", "p_model", "p_model", "p_model"),
                       g = c(10, 10, 10, 10, 10, 10, 5))
hl_sum <- list()
hl_groups <- list()
for (i in seq_len(nrow(hl_cases))) {
  d <- pred[[hl_cases$dataset[i]]]
  r <- hl(d$y, d[[hl_cases$predictor[i]]], hl_cases$g[i])
  key <- hl_cases[i, ]
  hl_sum[[i]] <- cbind(key, r$summary)
  hl_groups[[i]] <- cbind(key[rep(1, nrow(r$groups)), ], r$groups)
}
write_ref(do.call(rbind, hl_sum), "r_hosmer_lemeshow.csv")
write_ref(do.call(rbind, hl_groups), "r_hosmer_lemeshow_groups.csv")

# ---- rms::val.prob and calibration-in-the-large -----------------------------------------------------
# val.prob(p, y, pl = FALSE); glm(y ~ offset(qlogis(p)), family = binomial); glm(y ~ qlogis(p), ...)
vp_cases <- cases
valprob <- do.call(rbind, lapply(seq_len(nrow(vp_cases)), function(i) {
  d <- pred[[vp_cases$dataset[i]]]
  p <- d[[vp_cases$predictor[i]]]
  v <- val.prob(p, d$y, pl = FALSE)
  citl <- glm(d$y ~ 1 + offset(qlogis(p)), family = binomial, control = tight)
  recal <- glm(d$y ~ qlogis(p), family = binomial, control = tight)
  data.frame(dataset = vp_cases$dataset[i], predictor = vp_cases$predictor[i], brier = v[["Brier"]],
             intercept_recal = v[["Intercept"]], slope = v[["Slope"]], c = v[["C (ROC)"]],
             eavg = v[["Eavg"]], e90 = v[["E90"]], emax = v[["Emax"]],
             intercept_citl = unname(coef(citl)[1]), intercept_citl_se = sqrt(vcov(citl)[1, 1]),
             slope_se = sqrt(vcov(recal)[2, 2]))
}))
write_ref(valprob, "r_val_prob.csv")

# ---- lowess calibration curve -----------------------------------------------------------------------
# lowess(p, y, iter = 0)   (f = 2/3, delta = 0.01 * diff(range(p)))
sm <- lowess(pred$a$p_model, pred$a$y, iter = 0)
write_ref(data.frame(dataset = "a", predictor = "p_model", x = sm$x, y = sm$y), "r_lowess.csv")

# ---- baseline-table tests on clinical.csv ----------------------------------------------------------
clin$grade <- factor(clin$grade, levels = c("I", "II", "III"))
tests <- list(
  # t.test(age ~ her2) (Welch); wilcox.test(size ~ her2) (normal approximation, continuity correction)
  data.frame(variable = "age", test = "welch_t", p = t.test(age ~ her2, data = clin)$p.value),
  data.frame(variable = "size", test = "wilcoxon",
             p = suppressWarnings(wilcox.test(size ~ her2, data = clin))$p.value),
  data.frame(variable = "grade", test = "chisq",
             p = chisq.test(table(clin$grade, clin$her2), correct = FALSE)$p.value),
  data.frame(variable = "palpable", test = "chisq",
             p = chisq.test(table(clin$palpable, clin$her2), correct = FALSE)$p.value),
  data.frame(variable = "palpable", test = "chisq_yates", p = chisq.test(table(clin$palpable, clin$her2))$p.value),
  data.frame(variable = "calcification", test = "fisher",
             p = fisher.test(table(clin$calcification, clin$her2))$p.value),
  data.frame(variable = "age", test = "welch_anova_by_grade", p = oneway.test(age ~ grade, data = clin)$p.value),
  data.frame(variable = "size", test = "kruskal_by_grade", p = kruskal.test(size ~ grade, data = clin)$p.value),
  data.frame(variable = "age_her2_0", test = "shapiro", p = shapiro.test(clin$age[clin$her2 == 0])$p.value),
  data.frame(variable = "age_her2_1", test = "shapiro", p = shapiro.test(clin$age[clin$her2 == 1])$p.value),
  data.frame(variable = "size_her2_0", test = "shapiro", p = shapiro.test(clin$size[clin$her2 == 0])$p.value),
  data.frame(variable = "size_her2_1", test = "shapiro", p = shapiro.test(clin$size[clin$her2 == 1])$p.value)
)
write_ref(do.call(rbind, tests), "r_baseline_tests.csv")

# ---- logistic regression odds ratios (complete cases of all variables) ------------------------------
# glm(her2 ~ x, family = binomial, control = tight); exp(coef); exp(confint.default(fit)) (Wald)
cc <- na.omit(clin)
or_rows <- function(fit, model) {
  co <- summary(fit)$coefficients
  ci <- confint.default(fit)
  keep <- rownames(co) != "(Intercept)"
  data.frame(model = model, term = rownames(co)[keep], or = exp(co[keep, 1]),
             ci_low = exp(ci[keep, 1]), ci_high = exp(ci[keep, 2]), p = co[keep, 4])
}
vars <- c("age", "size", "grade", "palpable", "calcification")
ors <- do.call(rbind, lapply(vars, function(v) {
  or_rows(glm(as.formula(paste("her2 ~", v)), family = binomial, data = cc, control = tight), "univariable")
}))
full <- glm(her2 ~ age + size + grade + palpable + calcification, family = binomial, data = cc,
            control = tight)
ors <- rbind(ors, or_rows(full, "all"))
write_ref(ors, "r_odds_ratios.csv")
# joint Wald test of grade in the univariable model (what p_overall reports)
g <- glm(her2 ~ grade, family = binomial, data = cc, control = tight)
b <- coef(g)[-1]
v <- vcov(g)[-1, -1]
w <- as.numeric(t(b) %*% solve(v) %*% b)
write_ref(data.frame(term = "grade", chisq = w, df = 2, p = pchisq(w, 2, lower.tail = FALSE), n = nrow(cc)),
          "r_wald_grade.csv")

cat("wrote reference CSVs to", out_dir, "\n")
